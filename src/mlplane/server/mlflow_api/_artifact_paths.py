"""Where an MLflow artifact path lands in mlplane's store.

MLflow's proxied artifact store is one tree; mlplane keeps each run's and each
logged model's files apart. The tree's layout is fixed by the URIs handed out:

* ``<experiment_id>/<run_id>/artifacts/<path>``: a run's artifacts
  (the run's ``artifact_uri`` is ``mlflow-artifacts:/<experiment_id>/<run_id>/artifacts``);
* ``<experiment_id>/models/<model_id>/artifacts/<path>``: a logged model's files.

So a file logged by the stock client is the same file that ``/api/v1`` and the
SDK list and download, and the reverse.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Literal

from mlplane.server.mlflow_api._wire import MlflowError

SCHEME = "mlflow-artifacts:"
_ARTIFACTS = "artifacts"
_MODELS = "models"


def run_artifact_uri(experiment_id: str, run_id: str) -> str:
    """A run's ``artifact_uri`` as the stock client must see it (runs/get, runs/create)."""
    return f"{SCHEME}/{experiment_id}/{run_id}/{_ARTIFACTS}"


def logged_model_artifact_uri(experiment_id: str, model_id: str) -> str:
    """A logged model's ``artifact_location`` as the stock client must see it."""
    return f"{SCHEME}/{experiment_id}/{_MODELS}/{model_id}/{_ARTIFACTS}"


def safe_path(path: str | None) -> str:
    """A relative POSIX path with no ``..``, no absolute start and no NUL byte ("" for the root).

    Refused with MLflow's INVALID_PARAMETER_VALUE (400), before anything is looked up.
    """
    if not path:
        return ""
    if "\x00" in path:
        raise MlflowError("artifact path may not contain NUL bytes")
    if "\\" in path:
        raise MlflowError(f"artifact path {path!r} may not contain backslashes")
    if path.startswith("/") or posixpath.isabs(path) or (len(path) > 1 and path[1] == ":"):
        raise MlflowError(f"artifact path {path!r} must be relative, not absolute")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise MlflowError(f"artifact path {path!r} may not contain '..'")
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class Target:
    """What an MLflow artifact path names: a run's or a model's file or folder (``rel``),
    or a folder above those (``owner`` is None; ``children`` are its listed entries)."""

    experiment_id: str
    owner: Literal["run", "model"] | None
    owner_id: str
    rel: str
    children: tuple[str, ...] = ()


def resolve(path: str | None) -> Target | None:
    """The target of a safe path, or None for a path outside the layout."""
    parts = safe_path(path).split("/") if path else []
    if not parts or not parts[0].isdigit():
        return None
    eid = parts[0]
    if len(parts) >= 2 and parts[1] == _MODELS:
        if len(parts) == 2:
            return Target(eid, None, "", "", ())
        if len(parts) == 3:
            return Target(eid, None, parts[2], "", (_ARTIFACTS,))
        if parts[3] != _ARTIFACTS:
            return None
        return Target(eid, "model", parts[2], "/".join(parts[4:]))
    if len(parts) == 1:
        return Target(eid, None, "", "", ())
    if len(parts) == 2:
        return Target(eid, None, parts[1], "", (_ARTIFACTS,))
    if parts[2] != _ARTIFACTS:
        return None
    return Target(eid, "run", parts[1], "/".join(parts[3:]))


def require_file(path: str) -> Target:
    """The run or model file a path names (an upload's or a download's destination)."""
    target = resolve(path)
    if target is None or target.owner is None or not target.rel:
        raise MlflowError(
            f"artifact path {path!r} names no file: mlplane stores files under "
            "<experiment_id>/<run_id>/artifacts/ or <experiment_id>/models/<model_id>/artifacts/"
        )
    return target
