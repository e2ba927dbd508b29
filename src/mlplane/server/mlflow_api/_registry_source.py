"""Where an MLflow model-version ``source`` points, and copying its files out of it.

MLflow's registry stores a pointer; ours stores the files (scanned, hashed,
signed). So creating a version copies the model folder the source names out of
the tracking store, through the tracking service (so the caller's read
permission on the run or logged model applies), into a local folder that the
registry then registers. The sources a stock client sends:

* ``models:/m-<id>``: an MLflow 3 logged model (what ``log_model`` writes and
  ``register_model("runs:/…")`` resolves to);
* ``runs:/<run_id>/<path>``;
* ``mlflow-artifacts:/<experiment>/<run_id>/artifacts/<path>`` or
  ``…/models/<model_id>/artifacts/<path>`` (also as the proxied ``http(s)://…/
  api/2.0/mlflow-artifacts/artifacts/…`` URL): a run's or model's files;
* ``models:/<name>/<version>`` or ``models:/<name>@<alias>``: an existing
  version of this registry (``copy_model_version``).

Anything else (``s3://``, ``file://``, a local path) names files the server
cannot or must not read, and is refused.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlplane.errors import InvalidInput
from mlplane.registry._mlflow import MODEL_DIR
from mlplane.security import Principal
from mlplane.server.mlflow_api import _artifact_paths
from mlplane.services import Services
from mlplane.tracking.entities import ArtifactInfo

_LOGGED_MODEL = re.compile(r"^models:/(m-[0-9a-f]{32})(?:/(?P<rest>.*))?$")
_PROXIED = "/api/2.0/mlflow-artifacts/artifacts/"
_ARTIFACT_SCHEMES = ("mlflow-artifacts:", "mlplane-artifacts:")
Opener = Callable[[str], tuple[ArtifactInfo, BinaryIO]]


@dataclass(frozen=True, slots=True)
class Origin:
    """The files a source names: a run's or a logged model's folder, or a registry version."""

    kind: str
    """``run``, ``model`` or ``version``."""
    owner: str
    """The run id, logged model id, or ``models:/`` reference."""
    path: str = ""


def locate(source: str, model_id: str | None = None) -> Origin:
    """The origin of ``source`` (``model_id``, when given, is MLflow's logged model id).

    Raises:
        InvalidInput: the source is not one mlplane can copy from.
    """
    text = source.strip()
    if m := _LOGGED_MODEL.match(text):
        return Origin("model", m[1], _artifact_paths.safe_path(m["rest"]))
    if text.startswith("runs:/"):
        run_id, _, path = text[len("runs:/") :].lstrip("/").partition("/")
        if not run_id:
            raise InvalidInput(f"source {source!r} names no run: use runs:/<run_id>/<path>")
        return Origin("run", run_id, _artifact_paths.safe_path(path))
    if text.startswith("models:/"):
        return Origin("version", text)
    proxied = _artifact_path(text)
    if proxied is not None:
        target = _artifact_paths.resolve(proxied)
        if target is not None and target.owner is not None:
            return Origin(target.owner, target.owner_id, target.rel)
    if model_id:
        return Origin("model", model_id)
    raise InvalidInput(
        f"cannot register source {source!r}: mlplane copies a version's files into its "
        "registry and reads them from models:/m-<id>, runs:/<run_id>/<path>, "
        "mlflow-artifacts:/ paths of this server, or models:/<name>/<version>"
    )


def _artifact_path(uri: str) -> str | None:
    """The path in the proxied artifact tree that ``uri`` names, if it names one."""
    for scheme in _ARTIFACT_SCHEMES:
        if uri.startswith(scheme):
            parsed = urllib.parse.urlparse(uri)
            return urllib.parse.unquote(parsed.path).lstrip("/")
    if uri.startswith(("http://", "https://")) and _PROXIED in uri:
        tail = urllib.parse.urlparse(uri).path.split(_PROXIED, 1)[1]
        return urllib.parse.unquote(tail)
    return None


def copy_files(svc: Services, who: Principal, origin: Origin, dest: Path) -> str | None:
    """Copy the origin's model folder into ``dest``; returns the run the files came from
    (for the version's lineage), if known."""
    if origin.kind == "version":
        _, folder, _ = svc.registry.fetch(who, origin.owner)
        inner = folder / MODEL_DIR
        if not (inner / "MLmodel").is_file():
            raise InvalidInput(
                f"{origin.owner} was not registered from an MLflow model (it has no MLmodel); "
                "register its files with mlplane instead"
            )
        shutil.copytree(inner, dest, dirs_exist_ok=True)
        return svc.registry.get_version(who, origin.owner).run_id
    if origin.kind == "model":
        files = svc.tracking.list_model_artifacts(who, origin.owner, origin.path, recursive=True)
        _write(
            files,
            origin.path,
            dest,
            lambda p: svc.tracking.open_model_artifact(who, origin.owner, p),
        )
        return svc.tracking.get_logged_model(who, origin.owner).source_run_id
    files = svc.tracking.list_artifacts(who, origin.owner, origin.path, recursive=True)
    _write(files, origin.path, dest, lambda p: svc.tracking.open_artifact(who, origin.owner, p))
    return origin.owner


def _write(files: list[ArtifactInfo], prefix: str, dest: Path, opener: Opener) -> None:
    if not files:
        raise InvalidInput(f"the source has no files{f' under {prefix!r}' if prefix else ''}")
    base = len(prefix) + 1 if prefix else 0
    for info in files:
        target = dest / info.path[base:]
        target.parent.mkdir(parents=True, exist_ok=True)
        _, stream = opener(info.path)
        with stream, target.open("wb") as out:
            shutil.copyfileobj(stream, out, 1 << 20)
