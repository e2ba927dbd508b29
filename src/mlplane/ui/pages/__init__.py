"""The UI's pages, one module a section, each with its own ``router``."""

from __future__ import annotations

from mlplane.ui.pages import audit, compare, datasets, deployments, experiments, home, models

PAGES = [home, experiments, compare, datasets, models, deployments, audit]
"""Included by :func:`mlplane.ui.app.install`, in this order."""
