"""mlplane: the whole machine-learning lifecycle, self-hosted.

The fluent API (``mlplane.start_run()``, ``mlplane.log_metric()``…) wraps one
:class:`Client`; ``MLPLANE_URI`` picks the embedded store or a server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlplane import data, deployments, registry
    from mlplane._version import __version__
    from mlplane.autolog import autolog
    from mlplane.client import Client
    from mlplane.errors import (
        AlreadyExists,
        Conflict,
        InvalidInput,
        MlplaneError,
        NotFound,
        PermissionDenied,
    )
    from mlplane.fluent import (
        ActiveRun,
        active_run,
        end_run,
        flush,
        get_run,
        get_tracking_uri,
        log_artifact,
        log_artifacts,
        log_dict,
        log_input,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_text,
        search_runs,
        seed_everything,
        set_experiment,
        set_note,
        set_tag,
        set_tags,
        set_tracking_uri,
        start_run,
    )
    from mlplane.tracking.entities import Metric, Run, RunStatus, ViewType

# Each name loads its module on first use (PEP 562): ``import mlplane.blobs`` in a worker
# process, or a CLI command that needs only the data service, does not pay for the
# tracking client, the fluent API and their libraries.
_WHERE = {
    "data": "mlplane",
    "deployments": "mlplane",
    "registry": "mlplane",
    "__version__": "mlplane._version",
    "autolog": "mlplane.autolog",
    "Client": "mlplane.client",
    "AlreadyExists": "mlplane.errors",
    "Conflict": "mlplane.errors",
    "InvalidInput": "mlplane.errors",
    "MlplaneError": "mlplane.errors",
    "NotFound": "mlplane.errors",
    "PermissionDenied": "mlplane.errors",
    "ActiveRun": "mlplane.fluent",
    "active_run": "mlplane.fluent",
    "end_run": "mlplane.fluent",
    "flush": "mlplane.fluent",
    "get_run": "mlplane.fluent",
    "get_tracking_uri": "mlplane.fluent",
    "log_artifact": "mlplane.fluent",
    "log_artifacts": "mlplane.fluent",
    "log_dict": "mlplane.fluent",
    "log_input": "mlplane.fluent",
    "log_metric": "mlplane.fluent",
    "log_metrics": "mlplane.fluent",
    "log_param": "mlplane.fluent",
    "log_params": "mlplane.fluent",
    "log_text": "mlplane.fluent",
    "search_runs": "mlplane.fluent",
    "seed_everything": "mlplane.fluent",
    "set_experiment": "mlplane.fluent",
    "set_note": "mlplane.fluent",
    "set_tag": "mlplane.fluent",
    "set_tags": "mlplane.fluent",
    "set_tracking_uri": "mlplane.fluent",
    "start_run": "mlplane.fluent",
    "Metric": "mlplane.tracking.entities",
    "Run": "mlplane.tracking.entities",
    "RunStatus": "mlplane.tracking.entities",
    "ViewType": "mlplane.tracking.entities",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'mlplane' has no attribute {name!r}")
    loaded = importlib.import_module(module if module != "mlplane" else f"mlplane.{name}")
    value = loaded if module == "mlplane" else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
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
    "active_run",
    "autolog",
    "data",
    "deployments",
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
    "registry",
    "search_runs",
    "seed_everything",
    "set_experiment",
    "set_note",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]
