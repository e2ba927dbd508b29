"""The MLflow-compatible API: MLflow's REST wire protocol over mlplane's own services.

A stock MLflow client pointed at ``mlplane server`` (``mlflow.set_tracking_uri``)
logs into the same store as ``/api/v1``: a run logged through either is visible
through both. Each module owns one part of MLflow's API and exposes ``router``:

* :mod:`.tracking`: experiments, runs, metrics, search, artifact listing.
* :mod:`.registry`: registered models, model versions, aliases, stages.
* :mod:`.logged_models`: MLflow 3's logged models.
* :mod:`.artifacts`: the proxied artifact store (``/api/2.0/mlflow-artifacts``).
"""

from __future__ import annotations

from fastapi import FastAPI

from mlplane.server.mlflow_api import artifacts, logged_models, registry, tracking
from mlplane.server.mlflow_api._wire import PREFIXES

ARTIFACTS_PREFIX = "/api/2.0/mlflow-artifacts"


def install(app: FastAPI) -> None:
    """Mount every MLflow router on ``app`` (tracking and registry under both prefixes)."""
    for prefix in PREFIXES:
        app.include_router(tracking.router, prefix=prefix)
        app.include_router(registry.router, prefix=prefix)
        app.include_router(logged_models.router, prefix=prefix)
    app.include_router(artifacts.router, prefix=ARTIFACTS_PREFIX)
    app.include_router(tracking.root_router)
