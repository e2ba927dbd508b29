"""The web UI: server-rendered pages over the domain services, served by ``mlplane server``."""

from mlplane.ui.app import install

__all__ = ["install"]
