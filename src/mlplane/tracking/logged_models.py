"""Logged-model use cases of the tracking service (MLflow 3's ``LoggedModel``).

A logged model belongs to an experiment, so it is read and changed under that
experiment's project permissions. It is created PENDING, its files are
uploaded (:mod:`mlplane.tracking.model_artifacts`), then it is finalized
READY or FAILED. Params are write-once like a run's; tags change freely.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mlplane.db.engine import now_ms
from mlplane.errors import Conflict, InvalidInput, NotFound
from mlplane.projects.tables import ProjectRow
from mlplane.security import Permission, Principal
from mlplane.tracking import logged_model_search as search
from mlplane.tracking import validation as check
from mlplane.tracking._base import ServiceBase, decode_page_token, encode_page_token
from mlplane.tracking.entities import (
    LifecycleStage,
    LoggedModel,
    LoggedModelPage,
    LoggedModelStatus,
    ModelMetric,
)
from mlplane.tracking.tables import (
    LoggedModelMetricRow,
    LoggedModelParamRow,
    LoggedModelRow,
    LoggedModelTagRow,
)

MODEL_ID_PREFIX = "m-"


def check_model_id(value: object) -> str:
    """``m-`` and 32 lower-case hex digits, as MLflow makes them."""
    ok = isinstance(value, str) and value.startswith(MODEL_ID_PREFIX) and len(value) == 34
    if not ok or any(c not in "0123456789abcdef" for c in str(value)[2:]):
        raise InvalidInput(f"invalid logged model id {value!r}: expected 'm-' and 32 hex digits")
    return str(value)


def model_artifact_location(experiment_id: str, model_id: str) -> str:
    """Where a model's files live, in the scheme runs use (``mlplane-artifacts:/…``)."""
    return f"mlplane-artifacts:/{experiment_id}/models/{model_id}/artifacts"


class LoggedModelsMixin(ServiceBase):
    # -- scoping -----------------------------------------------------------------------------

    def _model_scope(
        self, s: Session, model_id: str, *, allow_deleted: bool = False
    ) -> tuple[LoggedModelRow, ProjectRow]:
        found = s.get(LoggedModelRow, check_model_id(model_id))
        if found is None or (not allow_deleted and found.lifecycle_stage != LifecycleStage.ACTIVE):
            raise NotFound(f"logged model {model_id} does not exist")
        _, project = self._experiment_scope(s, found.experiment_id)
        return found, project

    def _model_for(
        self, s: Session, p: Principal, model_id: str, perm: Permission, action: str
    ) -> tuple[LoggedModelRow, ProjectRow]:
        row, project = self._model_scope(s, model_id, allow_deleted=perm == Permission.READ)
        self._require(p, perm, project, action, f"logged-model/{model_id}")
        return row, project

    def _model_entity(self, s: Session, row: LoggedModelRow) -> LoggedModel:
        return self._model_entities(s, [row])[0]

    def _model_entities(self, s: Session, rows: Sequence[LoggedModelRow]) -> list[LoggedModel]:
        ids = [r.id for r in rows]
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        metrics: dict[str, list[ModelMetric]] = {i: [] for i in ids}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            for t in s.scalars(
                select(LoggedModelTagRow).where(LoggedModelTagRow.model_id.in_(part))
            ):
                tags[t.model_id][t.key] = t.value
            for q in s.scalars(
                select(LoggedModelParamRow).where(LoggedModelParamRow.model_id.in_(part))
            ):
                params[q.model_id][q.key] = q.value
            for m in s.scalars(
                select(LoggedModelMetricRow)
                .where(LoggedModelMetricRow.model_id.in_(part))
                .order_by(LoggedModelMetricRow.id)
            ):
                metrics[m.model_id].append(
                    ModelMetric(
                        key=m.key,
                        value=math.nan if m.value is None else m.value,
                        timestamp=m.timestamp,
                        step=m.step,
                        run_id=m.run_id,
                        dataset_name=m.dataset_name,
                        dataset_digest=m.dataset_digest,
                    )
                )
        return [
            LoggedModel(
                model_id=r.id,
                experiment_id=str(r.experiment_id),
                name=r.name,
                artifact_location=model_artifact_location(str(r.experiment_id), r.id),
                status=r.status,
                creation_time=r.creation_time,
                last_update_time=r.last_update_time,
                model_type=r.model_type,
                source_run_id=r.source_run_id,
                status_message=r.status_message,
                lifecycle_stage=r.lifecycle_stage,
                created_by=r.created_by,
                tags=tags[r.id],
                params=params[r.id],
                metrics=metrics[r.id],
            )
            for r in rows
        ]

    # -- use cases ---------------------------------------------------------------------------

    def create_logged_model(
        self,
        p: Principal,
        experiment_id: str,
        *,
        name: str | None = None,
        model_type: str | None = None,
        source_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> LoggedModel:
        """Create a PENDING model in an experiment (made by ``source_run_id`` if given)."""
        eid = check.experiment_id(experiment_id)
        clean_tags = self._strings("tag", tags)
        clean_params = self._strings("param", params)
        model_name = name or f"model-{uuid.uuid4().hex[:8]}"
        check.name("logged model", model_name)
        model_id = MODEL_ID_PREFIX + uuid.uuid4().hex
        with self._guard.unit(write=True) as s:
            exp, proj = self._experiment_scope(s, eid)
            self._require(p, Permission.WRITE, proj, "logged-model.create", f"experiment/{eid}")
            if exp.lifecycle_stage != LifecycleStage.ACTIVE:
                raise Conflict(f"experiment {eid} is deleted: restore it or pick another")
            if source_run_id:
                run, _ = self._run_scope(s, source_run_id)
                if run.experiment_id != eid:
                    raise InvalidInput(
                        f"run {source_run_id} belongs to experiment {run.experiment_id}, "
                        f"not {eid}: create the model in the run's experiment"
                    )
            now = now_ms()
            s.add(
                LoggedModelRow(
                    id=model_id,
                    experiment_id=eid,
                    name=model_name,
                    model_type=model_type or "",
                    source_run_id=source_run_id or None,
                    status=LoggedModelStatus.PENDING,
                    status_message="",
                    lifecycle_stage=LifecycleStage.ACTIVE,
                    created_by=p.name,
                    creation_time=now,
                    last_update_time=now,
                )
            )
            s.flush()
            s.add_all(
                LoggedModelTagRow(model_id=model_id, key=k, value=v) for k, v in clean_tags.items()
            )
            s.add_all(
                LoggedModelParamRow(model_id=model_id, key=k, value=v)
                for k, v in clean_params.items()
            )
            self._guard.audit(s, p, "logged-model.create", f"logged-model/{model_id}", proj.id)
            s.flush()
            return self._model_entity(s, s.get(LoggedModelRow, model_id))  # type: ignore[arg-type]

    def get_logged_model(
        self, p: Principal, model_id: str, *, allow_deleted: bool = False
    ) -> LoggedModel:
        with self._guard.unit(write=False) as s:
            row, _ = self._model_for(s, p, model_id, Permission.READ, "logged-model.read")
            if row.lifecycle_stage != LifecycleStage.ACTIVE and not allow_deleted:
                raise NotFound(f"logged model {model_id} does not exist")
            return self._model_entity(s, row)

    def finalize_logged_model(
        self, p: Principal, model_id: str, status: LoggedModelStatus, message: str = ""
    ) -> LoggedModel:
        """Mark a model READY (its files are complete) or FAILED."""
        if status == LoggedModelStatus.PENDING:
            raise InvalidInput("a logged model is finalized as READY or FAILED, not PENDING")
        with self._guard.unit(write=True) as s:
            row, proj = self._model_for(s, p, model_id, Permission.WRITE, "logged-model.finalize")
            row.status = status
            row.status_message = message
            row.last_update_time = now_ms()
            self._guard.audit(
                s,
                p,
                "logged-model.finalize",
                f"logged-model/{model_id}",
                proj.id,
                details={"status": str(status)},
            )
            return self._model_entity(s, row)

    def delete_logged_model(self, p: Principal, model_id: str) -> None:
        """Soft-delete a model: it leaves searches and ``get``; its files stay until purged."""
        with self._guard.unit(write=True) as s:
            row, proj = self._model_for(s, p, model_id, Permission.WRITE, "logged-model.delete")
            row.lifecycle_stage = LifecycleStage.DELETED
            row.last_update_time = now_ms()
            self._guard.audit(s, p, "logged-model.delete", f"logged-model/{model_id}", proj.id)

    def set_logged_model_tags(self, p: Principal, model_id: str, tags: Mapping[str, str]) -> None:
        clean = self._strings("tag", tags)
        with self._guard.unit(write=True) as s:
            row, _ = self._model_for(s, p, model_id, Permission.WRITE, "logged-model.tag")
            for k, v in clean.items():
                s.merge(LoggedModelTagRow(model_id=row.id, key=k, value=v))
            row.last_update_time = now_ms()

    def delete_logged_model_tag(self, p: Principal, model_id: str, key: str) -> None:
        with self._guard.unit(write=True) as s:
            row, _ = self._model_for(s, p, model_id, Permission.WRITE, "logged-model.tag")
            gone = s.execute(
                delete(LoggedModelTagRow).where(
                    LoggedModelTagRow.model_id == row.id, LoggedModelTagRow.key == key
                )
            ).rowcount  # type: ignore[attr-defined]
            if not gone:
                raise NotFound(f"logged model {model_id} has no tag {key!r}")
            row.last_update_time = now_ms()

    def log_logged_model_params(
        self, p: Principal, model_id: str, params: Mapping[str, str]
    ) -> None:
        """Add params; like a run's they are write-once (the same value again is fine)."""
        clean = self._strings("param", params)
        with self._guard.unit(write=True) as s:
            row, _ = self._model_for(s, p, model_id, Permission.WRITE, "logged-model.params")
            old = {
                q.key: q.value
                for q in s.scalars(
                    select(LoggedModelParamRow).where(
                        LoggedModelParamRow.model_id == row.id,
                        LoggedModelParamRow.key.in_(list(clean)),
                    )
                )
            }
            for k, v in clean.items():
                if k in old and old[k] != v:
                    raise Conflict(
                        f"param {k!r} of logged model {model_id} is already {old[k]!r}: "
                        "params are write-once"
                    )
                if k not in old:
                    s.add(LoggedModelParamRow(model_id=row.id, key=k, value=v))
            row.last_update_time = now_ms()

    def log_logged_model_metrics(
        self, p: Principal, model_id: str, metrics: Sequence[ModelMetric]
    ) -> None:
        """Link metric points to a model (the run they were logged to, if any, is kept)."""
        points = []
        for m in metrics:
            key = check.key("metric", m.key)
            value = float(m.value)
            points.append(
                LoggedModelMetricRow(
                    model_id=model_id,
                    key=key,
                    value=None if math.isnan(value) else value,
                    timestamp=int(m.timestamp),
                    step=int(m.step),
                    run_id=m.run_id,
                    dataset_name=m.dataset_name or "",
                    dataset_digest=m.dataset_digest or "",
                )
            )
        with self._guard.unit(write=True) as s:
            row, _ = self._model_for(s, p, model_id, Permission.WRITE, "logged-model.metrics")
            s.add_all(points)
            row.last_update_time = now_ms()

    def search_logged_models(
        self,
        p: Principal,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None = None,
        datasets: Sequence[search.Dataset] = (),
        order_by: Sequence[search.Order] = (),
        max_results: int = 100,
        page_token: str | None = None,
    ) -> LoggedModelPage:
        """Active models of the experiments that match the filter, newest first by default."""
        if not experiment_ids:
            raise InvalidInput("search_logged_models needs at least one experiment id")
        if not 1 <= max_results <= 50_000:
            raise InvalidInput("max_results must be between 1 and 50000")
        clauses = search.parse_filter(filter_string)
        offset = decode_page_token(page_token)
        eids = [check.experiment_id(e) for e in experiment_ids]
        with self._guard.unit(write=False) as s:
            for eid in eids:
                _, proj = self._experiment_scope(s, eid)
                self._require(p, Permission.READ, proj, "logged-model.search", f"experiment/{eid}")
            rows = list(
                s.scalars(
                    select(LoggedModelRow).where(
                        LoggedModelRow.experiment_id.in_(eids),
                        LoggedModelRow.lifecycle_stage == LifecycleStage.ACTIVE,
                    )
                )
            )
            models = self._model_entities(s, rows)
        found = search.sort([m for m in models if search.matches(m, clauses, datasets)], order_by)
        page = found[offset : offset + max_results]
        more = offset + max_results < len(found)
        return LoggedModelPage(page, encode_page_token(offset + max_results) if more else None)
