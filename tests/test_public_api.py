"""The SDK's public surface is pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import mlplane

EXPECTED = {
    "ActiveRun",
    "AlreadyExists",
    "Client",
    "Conflict",
    "InvalidInput",
    "Metric",
    "MlplaneError",
    "NotFound",
    "PermissionDenied",
    "Run",
    "RunStatus",
    "ViewType",
    "__version__",
    "autolog",
    "data",
    "deployments",
    "registry",
    "active_run",
    "end_run",
    "flush",
    "get_run",
    "get_tracking_uri",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "search_runs",
    "seed_everything",
    "set_experiment",
    "set_note",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
}


def test_all_is_pinned() -> None:
    assert set(mlplane.__all__) == EXPECTED
    for name in mlplane.__all__:
        assert hasattr(mlplane, name), name
