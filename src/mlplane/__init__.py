"""mlplane: the whole machine-learning lifecycle, self-hosted.

The fluent API (``mlplane.start_run()``, ``mlplane.log_metric()``…) wraps one
:class:`Client`; ``MLPLANE_URI`` picks the embedded store or a server.
"""

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
