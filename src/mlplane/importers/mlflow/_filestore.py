"""An MLflow file store (``mlruns/``), read from its folders without MLflow.

The layout, as MLflow's ``FileStore`` writes it::

    mlruns/<exp>/meta.yaml                    experiment (``.trash/<exp>`` once deleted)
    mlruns/<exp>/tags/<key>                   experiment tags (a ``/`` in a key is a folder)
    mlruns/<exp>/datasets/<id>/meta.yaml      datasets that runs of the experiment read
    mlruns/<exp>/models/<m-id>/               logged models (MLflow 3): meta.yaml, artifacts/
    mlruns/<exp>/<run>/meta.yaml              run (status as MLflow's enum number)
    mlruns/<exp>/<run>/metrics/<key>          one "timestamp value step" line per point
    mlruns/<exp>/<run>/params/<key>, tags/<key>, inputs/<id>/meta.yaml, artifacts/
    mlruns/models/<name>/meta.yaml            registered model; tags/, aliases/<alias>
    mlruns/models/<name>/version-<n>/meta.yaml
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mlplane.errors import InvalidInput
from mlplane.importers.mlflow._entities import (
    SrcDatasetInput,
    SrcExperiment,
    SrcFile,
    SrcModel,
    SrcModelVersion,
    SrcRun,
    status_name,
)
from mlplane.importers.mlflow._source import LocalArtifacts, MetricPoint, MlflowSource, join_uri

_TRASH = ".trash"
_RESERVED = frozenset({"tags", "datasets", "traces", "models", "inputs", "outputs"})


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path} is not a readable MLflow meta file: {exc}") from None
    return data if isinstance(data, dict) else {}


def _key_files(folder: Path) -> dict[str, str]:
    """Files under ``folder`` keyed by their relative path (MLflow keys may hold ``/``)."""
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _int(value: object) -> int | None:
    return int(value) if value not in (None, "") else None  # type: ignore[call-overload]


class FileStoreSource(MlflowSource):
    """Reads an ``mlruns`` folder; artifacts from the local paths its runs record."""

    def __init__(self, root: Path, *, artifacts_root: Path | None = None) -> None:
        if not root.is_dir():
            raise InvalidInput(f"{root} is not a folder (nor an MLflow server URL or database)")
        self.root = root
        self.label = str(root.resolve())
        self._local = LocalArtifacts(artifacts_root)
        self._exp_dirs: dict[str, Path] = {}
        for parent in (root, root / _TRASH):
            if parent.is_dir():
                for d in sorted(parent.iterdir()):
                    if d.name not in _RESERVED and (d / "meta.yaml").is_file():
                        self._exp_dirs[d.name] = d
        if not self._exp_dirs and not (root / "models").is_dir():
            raise InvalidInput(
                f"{root} is not an MLflow file store: it has no <experiment>/meta.yaml "
                "(point --from at the mlruns folder itself)"
            )

    # -- tracking ----------------------------------------------------------------------------

    def experiments(self) -> list[SrcExperiment]:
        out = []
        for eid, d in self._exp_dirs.items():
            meta = _yaml(d / "meta.yaml")
            stage = "deleted" if d.parent.name == _TRASH else meta.get("lifecycle_stage", "active")
            out.append(
                SrcExperiment(
                    experiment_id=str(meta.get("experiment_id", eid)),
                    name=str(meta.get("name", eid)),
                    lifecycle_stage=str(stage),
                    artifact_location=str(meta.get("artifact_location", "")),
                    creation_time=_int(meta.get("creation_time")),
                    tags=_key_files(d / "tags"),
                )
            )
        return out

    def runs(self, experiment_id: str) -> Iterator[SrcRun]:
        exp_dir = self._exp_dirs.get(experiment_id)
        if exp_dir is None:
            return
        for d in sorted(exp_dir.iterdir()):
            if d.name in _RESERVED or not (d / "meta.yaml").is_file():
                continue
            meta = _yaml(d / "meta.yaml")
            tags = _key_files(d / "tags")
            artifact_uri = str(meta.get("artifact_uri") or "")
            if not self._reachable(artifact_uri) and (d / "artifacts").is_dir():
                artifact_uri = str(d / "artifacts")  # the store was moved since
            yield SrcRun(
                run_id=str(meta.get("run_id") or meta.get("run_uuid") or d.name),
                experiment_id=experiment_id,
                name=str(meta.get("run_name") or tags.get("mlflow.runName") or ""),
                status=status_name(meta.get("status", 1)),
                start_time=_int(meta.get("start_time")),
                end_time=_int(meta.get("end_time")),
                lifecycle_stage=str(meta.get("lifecycle_stage") or "active"),
                artifact_uri=artifact_uri,
                params=_key_files(d / "params"),
                tags=tags,
                metric_keys=tuple(_key_files(d / "metrics")),
                inputs=tuple(self._inputs(exp_dir, d / "inputs")),
            )

    def _inputs(self, exp_dir: Path, folder: Path) -> Iterator[SrcDatasetInput]:
        if not folder.is_dir():
            return
        for d in sorted(folder.iterdir()):
            if not (d / "meta.yaml").is_file():
                continue
            meta = _yaml(d / "meta.yaml")
            if meta.get("source_type") != "DATASET":
                continue
            ds_meta = exp_dir / "datasets" / str(meta.get("source_id")) / "meta.yaml"
            if not ds_meta.is_file():
                continue
            ds = _yaml(ds_meta)
            tags = meta.get("tags") or {}
            yield SrcDatasetInput(
                name=str(ds.get("name", "")),
                digest=str(ds.get("digest") or ""),
                source_type=str(ds.get("source_type") or ""),
                source=str(ds.get("source") or ""),
                context=str(tags.get("mlflow.data.context", "")),
            )

    def metric_history(self, run: SrcRun) -> list[MetricPoint]:
        folder = self._exp_dirs[run.experiment_id] / run.run_id / "metrics"
        out: list[MetricPoint] = []
        for key in run.metric_keys:
            for line in (folder / key).read_text(encoding="utf-8").splitlines():
                parts = line.split()
                if len(parts) < 2:
                    continue
                step = int(parts[2]) if len(parts) >= 3 else 0
                out.append((key, float(parts[1]), int(parts[0]), step))
        return out

    # -- registry ----------------------------------------------------------------------------

    def models(self) -> list[SrcModel]:
        folder = self.root / "models"
        if not folder.is_dir():
            return []
        out = []
        for d in sorted(folder.iterdir()):
            if not (d / "meta.yaml").is_file():
                continue
            meta = _yaml(d / "meta.yaml")
            aliases = {k: v.strip() for k, v in _key_files(d / "aliases").items()}
            out.append(
                SrcModel(
                    name=str(meta.get("name", d.name)),
                    description=str(meta.get("description") or ""),
                    tags=_key_files(d / "tags"),
                    aliases=aliases,
                )
            )
        return out

    def model_versions(self, name: str) -> list[SrcModelVersion]:
        folder = self.root / "models" / name
        out = []
        for d in folder.glob("version-*"):
            if not (d / "meta.yaml").is_file():
                continue
            meta = _yaml(d / "meta.yaml")
            out.append(
                SrcModelVersion(
                    name=name,
                    version=str(meta.get("version", d.name.removeprefix("version-"))),
                    source=str(meta.get("source") or ""),
                    run_id=meta.get("run_id") or None,
                    status=str(meta.get("status") or "READY"),
                    description=str(meta.get("description") or ""),
                    creation_time=_int(meta.get("creation_timestamp")),
                    stage=str(meta.get("current_stage") or ""),
                    model_id=meta.get("model_id") or None,
                    storage_location=str(meta.get("storage_location") or ""),
                    tags=_key_files(d / "tags"),
                )
            )
        return sorted(out, key=lambda v: int(v.version))

    # -- artifacts ---------------------------------------------------------------------------

    def resolve(self, uri: str) -> str:
        if uri.startswith("models:/"):
            model_id = uri.removeprefix("models:/").strip("/")
            for exp_dir in self._exp_dirs.values():
                d = exp_dir / "models" / model_id
                if (d / "meta.yaml").is_file():
                    location = str(_yaml(d / "meta.yaml").get("artifact_location") or "")
                    if self._reachable(location):
                        return location
                    return str(d / "artifacts")
            raise InvalidInput(f"{uri}: no logged model {model_id!r} in {self.root}")
        if uri.startswith("runs:/"):
            run_id, _, path = uri.removeprefix("runs:/").partition("/")
            for exp_dir in self._exp_dirs.values():
                d = exp_dir / run_id
                if (d / "meta.yaml").is_file():
                    location = str(_yaml(d / "meta.yaml").get("artifact_uri") or "")
                    base = location if self._reachable(location) else str(d / "artifacts")
                    return join_uri(base, path)
            raise InvalidInput(f"{uri}: no run {run_id!r} in {self.root}")
        return uri

    def _reachable(self, uri: str) -> bool:
        try:
            return bool(uri) and self._local.path(uri).exists()
        except InvalidInput:
            return False

    def list_files(self, uri: str) -> list[SrcFile]:
        return self._local.list_files(uri)

    def download(self, uri: str, path: str, dest: Path) -> None:
        self._local.download(uri, path, dest)
