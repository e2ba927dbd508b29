"""What every part of the tracking service shares: stores, guard, scoping helpers."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplane.blobs import BlobStore
from mlplane.db.engine import Database
from mlplane.errors import Conflict, InvalidInput, NotFound
from mlplane.projects.tables import ProjectRow
from mlplane.security import Guard, Permission, Principal
from mlplane.tracking import _rows, ingest
from mlplane.tracking import validation as check
from mlplane.tracking.entities import (
    Experiment,
    LifecycleStage,
    RunInput,
    ViewType,
)
from mlplane.tracking.tables import (
    ExperimentRow,
    RunRow,
)


def encode_page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"o": offset})).decode()


def decode_page_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = orjson.loads(base64.urlsafe_b64decode(token.encode()))["o"]
    except Exception:
        raise InvalidInput("invalid page_token: pass back the next_page_token you got") from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidInput("invalid page_token: pass back the next_page_token you got")
    return offset


class ServiceBase:
    """Stores, the guard, and the lookups that resolve an object to its project."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        guard: Guard,
        *,
        max_batch_points: int,
        secrets_policy: str = "refuse",
    ) -> None:
        self._db = db
        self._blobs = blobs
        self._guard = guard
        self._max_batch_points = max_batch_points
        self._secrets_policy = secrets_policy
        self._key_ids: dict[str, int] = {}  # interned metric keys: ids never change
        self.input_check: Callable[[Principal, RunInput], bool] | None = None
        """Checks an input before it is logged; True records it as read with unhandled PII."""

    def _metric_key_ids(self, keys: Sequence[str]) -> dict[str, int]:
        known = self._key_ids
        missing = [k for k in set(keys) if k not in known]
        if missing:
            known.update(ingest.intern_keys(self._db.write, missing))
        return known

    # -- helpers -----------------------------------------------------------------------------

    def _strings(self, kind: str, values: Mapping[str, object] | None) -> dict[str, str]:
        """Params or tags checked, with credentials refused or masked by the policy."""
        return check.without_secrets(kind, check.string_map(kind, values), self._secrets_policy)

    def _experiment_scope(self, s: Session, experiment_id: int) -> tuple[ExperimentRow, ProjectRow]:
        found = s.execute(
            select(ExperimentRow, ProjectRow)
            .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
            .where(ExperimentRow.id == experiment_id)
        ).first()
        if found is None:
            raise NotFound(f"experiment {experiment_id} does not exist")
        return found[0], found[1]

    def _run_scope(self, s: Session, run_id: str) -> tuple[RunRow, ProjectRow]:
        check.run_id(run_id)
        found = s.execute(
            select(RunRow, ProjectRow)
            .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
            .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
            .where(RunRow.id == run_id)
        ).first()
        if found is None:
            raise NotFound(f"run {run_id} does not exist")
        return found[0], found[1]

    def _require(
        self, p: Principal, perm: Permission, project: ProjectRow, action: str, resource: str
    ) -> None:
        self._guard.require(
            p, perm, project=project.name, project_id=project.id, action=action, resource=resource
        )

    def _run_for(
        self, s: Session, p: Principal, run_id: str, perm: Permission, action: str
    ) -> tuple[RunRow, ProjectRow]:
        run, project = self._run_scope(s, run_id)
        self._require(p, perm, project, action, f"run/{run_id}")
        return run, project

    def _writable_run(
        self, s: Session, p: Principal, run_id: str, action: str
    ) -> tuple[RunRow, ProjectRow]:
        run, project = self._run_for(s, p, run_id, Permission.WRITE, action)
        if run.lifecycle_stage != LifecycleStage.ACTIVE:
            raise Conflict(f"run {run_id} is deleted: restore it before logging to it")
        return run, project

    def _experiment_entity(self, s: Session, row: ExperimentRow, project: str) -> Experiment:
        return _rows.experiment(row, project, _rows.experiment_tags(s, [row.id]).get(row.id, {}))


def stage_filter(q, column, view: ViewType):  # type: ignore[no-untyped-def]
    if view == ViewType.ACTIVE_ONLY:
        return q.where(column == LifecycleStage.ACTIVE)
    if view == ViewType.DELETED_ONLY:
        return q.where(column == LifecycleStage.DELETED)
    return q
