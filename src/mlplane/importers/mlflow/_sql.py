"""MLflow's SQL database (what ``mlflow server --backend-store-uri`` keeps), read directly.

The tables are reflected, not declared: the columns this import reads have
been in MLflow's schema since 2.x, and tables that older databases lack
(dataset inputs, aliases, logged models) read as empty. The database only
holds artifact URIs; ``--artifacts-root`` says where ``mlflow-artifacts:/``
ones live.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, Table, create_engine, select
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from mlplane.errors import InvalidInput, Unavailable
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

_TABLES = (
    "experiments",
    "experiment_tags",
    "runs",
    "metrics",
    "params",
    "tags",
    "datasets",
    "inputs",
    "input_tags",
    "logged_models",
    "registered_models",
    "registered_model_tags",
    "registered_model_aliases",
    "model_versions",
    "model_version_tags",
)


class SqlSource(MlflowSource):
    """Reads an MLflow database (SQLite, PostgreSQL, MySQL: any SQLAlchemy URL)."""

    def __init__(self, url: str, *, artifacts_root: Path | None = None) -> None:
        self.label = _redacted(url)
        try:
            self._engine = create_engine(url)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise InvalidInput(
                f"{self.label} is not a database URL SQLAlchemy knows: {exc}"
            ) from None
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            raise InvalidInput(f"{self.label}: no such SQLite database file")
        meta = MetaData()
        try:
            with self._engine.connect() as conn:
                present = set(self._engine.dialect.get_table_names(conn))
                meta.reflect(conn, only=[t for t in _TABLES if t in present])
        except SQLAlchemyError as exc:
            raise Unavailable(f"cannot read the database {self.label}: {exc}") from None
        if not {"experiments", "runs", "metrics"} <= present:
            raise InvalidInput(
                f"{self.label} is not an MLflow database: it has no experiments, runs and "
                "metrics tables"
            )
        self._t: dict[str, Table] = dict(meta.tables)
        self._local = LocalArtifacts(artifacts_root)

    def _rows(self, table: str, *where: Any, order: tuple[str, ...] = ()) -> list[Any]:
        t = self._t.get(table)
        if t is None:
            return []
        q = select(t).where(*(w(t) for w in where)).order_by(*(t.c[c] for c in order))
        try:
            with self._engine.connect() as conn:
                return list(conn.execute(q).mappings())
        except SQLAlchemyError as exc:
            raise Unavailable(f"cannot read {table} from {self.label}: {exc}") from None

    def _pairs(self, table: str, column: str, value: Any) -> dict[str, str]:
        return {
            str(r["key"]): str(r["value"] or "")
            for r in self._rows(table, lambda t: t.c[column] == value)
        }

    # -- tracking ----------------------------------------------------------------------------

    def experiments(self) -> list[SrcExperiment]:
        return [
            SrcExperiment(
                experiment_id=str(r["experiment_id"]),
                name=str(r["name"]),
                lifecycle_stage=str(r["lifecycle_stage"] or "active"),
                artifact_location=str(r["artifact_location"] or ""),
                creation_time=r.get("creation_time"),
                tags=self._pairs("experiment_tags", "experiment_id", r["experiment_id"]),
            )
            for r in self._rows("experiments", order=("experiment_id",))
        ]

    def runs(self, experiment_id: str) -> Iterator[SrcRun]:
        eid = int(experiment_id)
        for r in self._rows("runs", lambda t: t.c.experiment_id == eid, order=("start_time",)):
            run_id = str(r["run_uuid"])
            keys = self._metric_keys(run_id)
            tags = self._pairs("tags", "run_uuid", run_id)
            yield SrcRun(
                run_id=run_id,
                experiment_id=experiment_id,
                name=str(r["name"] or tags.get("mlflow.runName") or ""),
                status=status_name(r["status"]),
                start_time=r["start_time"],
                end_time=r["end_time"],
                lifecycle_stage=str(r["lifecycle_stage"] or "active"),
                artifact_uri=str(r["artifact_uri"] or ""),
                params=self._pairs("params", "run_uuid", run_id),
                tags=tags,
                metric_keys=tuple(sorted(keys)),
                inputs=tuple(self._inputs(run_id)),
            )

    def _metric_keys(self, run_id: str) -> list[str]:
        t = self._t["metrics"]
        q = select(t.c.key).where(t.c.run_uuid == run_id).distinct()
        try:
            with self._engine.connect() as conn:
                return [str(k) for k in conn.execute(q).scalars()]
        except SQLAlchemyError as exc:
            raise Unavailable(f"cannot read metrics from {self.label}: {exc}") from None

    def _inputs(self, run_id: str) -> Iterator[SrcDatasetInput]:
        for inp in self._rows(
            "inputs",
            lambda t: t.c.destination_id == run_id,
            lambda t: t.c.source_type == "DATASET",
        ):
            found = self._rows("datasets", lambda t, i=inp: t.c.dataset_uuid == i["source_id"])
            if not found:
                continue
            ds = found[0]
            tags = {
                str(t["name"]): str(t["value"])
                for t in self._rows(
                    "input_tags", lambda t, i=inp: t.c.input_uuid == i["input_uuid"]
                )
            }
            yield SrcDatasetInput(
                name=str(ds["name"]),
                digest=str(ds["digest"] or ""),
                source_type=str(ds["dataset_source_type"] or ""),
                source=str(ds["dataset_source"] or ""),
                context=tags.get("mlflow.data.context", ""),
            )

    def metric_history(self, run: SrcRun) -> list[MetricPoint]:
        rows = self._rows(
            "metrics",
            lambda t: t.c.run_uuid == run.run_id,
            order=("key", "step", "timestamp"),
        )
        return [
            (
                str(m["key"]),
                math.nan if m.get("is_nan") else float(m["value"]),
                int(m["timestamp"] or 0),
                int(m["step"] or 0),
            )
            for m in rows
        ]

    # -- registry ----------------------------------------------------------------------------

    def models(self) -> list[SrcModel]:
        out = []
        for r in self._rows("registered_models", order=("name",)):
            name = r["name"]
            aliases = {
                str(a["alias"]): str(a["version"])
                for a in self._rows("registered_model_aliases", lambda t, n=name: t.c.name == n)
            }
            out.append(
                SrcModel(
                    name=str(name),
                    description=str(r["description"] or ""),
                    tags=self._pairs("registered_model_tags", "name", name),
                    aliases=aliases,
                )
            )
        return out

    def model_versions(self, name: str) -> list[SrcModelVersion]:
        out = []
        for r in self._rows("model_versions", lambda t: t.c.name == name, order=("version",)):
            tags = {
                str(t["key"]): str(t["value"] or "")
                for t in self._rows(
                    "model_version_tags",
                    lambda t, v=r["version"]: (t.c.name == name) & (t.c.version == v),
                )
            }
            source = str(r["source"] or "")
            out.append(
                SrcModelVersion(
                    name=name,
                    version=str(r["version"]),
                    source=source,
                    run_id=r["run_id"] or None,
                    status=str(r["status"] or "READY"),
                    description=str(r["description"] or ""),
                    creation_time=r["creation_time"],
                    stage=str(r["current_stage"] or ""),
                    model_id=source.removeprefix("models:/")
                    if source.startswith("models:/")
                    else None,
                    storage_location=str(r.get("storage_location") or ""),
                    tags=tags,
                )
            )
        return out

    # -- artifacts ---------------------------------------------------------------------------

    def resolve(self, uri: str) -> str:
        if uri.startswith("models:/"):
            model_id = uri.removeprefix("models:/").strip("/")
            found = self._rows("logged_models", lambda t: t.c.model_id == model_id)
            if not found:
                raise InvalidInput(f"{uri}: no logged model {model_id!r} in {self.label}")
            return str(found[0]["artifact_location"])
        if uri.startswith("runs:/"):
            run_id, _, path = uri.removeprefix("runs:/").partition("/")
            found = self._rows("runs", lambda t: t.c.run_uuid == run_id)
            if not found:
                raise InvalidInput(f"{uri}: no run {run_id!r} in {self.label}")
            return join_uri(str(found[0]["artifact_uri"]), path)
        return uri

    def list_files(self, uri: str) -> list[SrcFile]:
        return self._local.list_files(uri)

    def download(self, uri: str, path: str, dest: Path) -> None:
        self._local.download(uri, path, dest)

    def close(self) -> None:
        self._engine.dispose()


def _redacted(url: str) -> str:
    """The URL without its password, for messages and tags."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"
