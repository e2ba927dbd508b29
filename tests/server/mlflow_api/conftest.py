"""Fixtures for the MLflow-compatible API: the stock MLflow client and raw HTTP, both
against the session ``server`` (a real ``mlplane server`` on a loopback port)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

MLFLOW = "/api/2.0/mlflow"


@pytest.fixture(autouse=True)
def _mlflow_env(server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point the stock client at the server; a 5xx fails at once instead of being
    retried seven times with backoff, and no run or experiment leaks between tests."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    import mlflow

    mlflow.set_tracking_uri(server.url)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    from mlflow.tracking import fluent as mlflow_fluent

    mlflow_fluent._active_experiment_id = None
    # set_experiment exports the id; monkeypatch only restores what it set itself.
    for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        os.environ.pop(var, None)


@pytest.fixture
def mlflow_client(server: Any) -> Any:
    """A stock ``MlflowClient`` on the server."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.url)


@pytest.fixture
def api(server: Any) -> Iterator[httpx.Client]:
    """Raw HTTP on the server (paths relative to its root, e.g. ``MLFLOW + "/runs/get"``)."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
