"""The REST server: ``/api/v1``, health, Prometheus metrics, OpenAPI."""

from mlplane.server.app import create_app

__all__ = ["create_app"]
