"""Tracking use cases: experiments, runs, params, metrics, tags, artifacts, inputs.

Every method takes the calling :class:`Principal` first, checks its permission
through the :class:`Guard` and, for changes of state, writes the audit event
in the same transaction as the change. Data-plane writes (metric points,
params, tags) are checked but not audited one by one: the run's creation,
termination and deletion are.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from mlplane.db.engine import now_ms
from mlplane.errors import Conflict, InvalidInput, NotFound
from mlplane.projects.tables import ProjectRow
from mlplane.security import Permission, Principal
from mlplane.tracking import _rows, ingest, search, search_sql
from mlplane.tracking import validation as check
from mlplane.tracking._base import ServiceBase, decode_page_token, encode_page_token
from mlplane.tracking.entities import (
    TAG_NOTE,
    LifecycleStage,
    Metric,
    MetricColumns,
    Run,
    RunInfo,
    RunInput,
    RunPage,
    RunStatus,
    ViewType,
)
from mlplane.tracking.experiments import ExperimentsMixin
from mlplane.tracking.tables import (
    ArtifactRow,
    ArtifactUploadPartRow,
    ArtifactUploadRow,
    ExperimentRow,
    LatestMetricRow,
    LoggedModelArtifactRow,
    MetricKeyRow,
    MetricRow,
    ParamRow,
    RunInputRow,
    RunRow,
    TagRow,
)
from mlplane.tracking.uploads import UploadsMixin


class TrackingService(ExperimentsMixin, UploadsMixin, ServiceBase):
    """Experiments and runs over the metadata database and the blob store.

    ``UploadsMixin`` brings the run artifacts, MLflow 3's logged models and their files,
    and multipart uploads (:mod:`.artifacts`, :mod:`.logged_models`, :mod:`.model_artifacts`,
    :mod:`.uploads`).
    """

    # -- runs --------------------------------------------------------------------------------

    def create_run(
        self,
        p: Principal,
        experiment_id: str,
        *,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        heartbeat: bool = False,
    ) -> Run:
        """Start a run. With ``heartbeat`` the run is marked FAILED when its heartbeats stop."""
        eid = check.experiment_id(experiment_id)
        clean_tags = self._strings("tag", tags)
        if run_name is not None:
            check.name("run", run_name)
        with self._guard.unit(write=True) as s:
            exp, proj = self._experiment_scope(s, eid)
            self._require(p, Permission.WRITE, proj, "run.create", f"experiment/{eid}")
            if exp.lifecycle_stage != LifecycleStage.ACTIVE:
                raise Conflict(f"experiment {eid} is deleted: restore it or pick another")
            if parent_run_id is not None:
                parent, _ = self._run_scope(s, parent_run_id)
                if parent.experiment_id != eid:
                    raise InvalidInput("a nested run must be in the same experiment as its parent")
            run_id = uuid.uuid4().hex
            now = now_ms()
            row = RunRow(
                id=run_id,
                experiment_id=eid,
                name=run_name or _generated_name(run_id),
                status=RunStatus.RUNNING,
                start_time=start_time if start_time is not None else now,
                end_time=None,
                lifecycle_stage=LifecycleStage.ACTIVE,
                user_id=p.name,
                parent_run_id=parent_run_id,
                artifact_uri=f"{exp.artifact_location.rstrip('/')}/{run_id}/artifacts",
                heartbeat_at=now if heartbeat else None,
            )
            s.add(row)
            s.flush()
            s.add_all(TagRow(run_id=run_id, key=k, value=v) for k, v in clean_tags.items())
            self._guard.audit(
                s, p, "run.create", f"run/{run_id}", proj.id, details={"experiment_id": eid}
            )
            s.flush()
            return _rows.load_runs(s, [row])[0]

    def get_run(self, p: Principal, run_id: str) -> Run:
        with self._guard.unit(write=False) as s:
            run, _ = self._run_for(s, p, run_id, Permission.READ, "run.read")
            return _rows.load_runs(s, [run])[0]

    def update_run(
        self,
        p: Principal,
        run_id: str,
        *,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        """Rename a run or change its status; a terminal status sets ``end_time``."""
        new_status = _status(status) if status is not None else None
        if run_name is not None:
            check.name("run", run_name)
        with self._guard.unit(write=True) as s:
            run, proj = self._writable_run(s, p, run_id, "run.update")
            if run_name is not None:
                run.name = run_name
            if new_status is not None:
                run.status = new_status
                if new_status.is_terminal:
                    run.end_time = end_time if end_time is not None else now_ms()
                    run.heartbeat_at = None
                else:
                    run.end_time = None
            self._guard.audit(
                s,
                p,
                "run.update",
                f"run/{run_id}",
                proj.id,
                details={"status": new_status, "name": run_name},
            )
            return _rows.run_info(run)

    def set_terminated(
        self, p: Principal, run_id: str, status: str = "FINISHED", end_time: int | None = None
    ) -> RunInfo:
        st = _status(status)
        if not st.is_terminal:
            raise InvalidInput(
                f"{status!r} is not a terminal status: use FINISHED, FAILED or KILLED"
            )
        return self.update_run(p, run_id, status=st, end_time=end_time)

    def delete_run(self, p: Principal, run_id: str) -> None:
        """Soft-delete a run (restorable with :meth:`restore_run`)."""
        self._set_run_stage(p, run_id, LifecycleStage.DELETED)

    def restore_run(self, p: Principal, run_id: str) -> None:
        self._set_run_stage(p, run_id, LifecycleStage.ACTIVE)

    def _set_run_stage(self, p: Principal, run_id: str, stage: LifecycleStage) -> None:
        action = "run.delete" if stage == LifecycleStage.DELETED else "run.restore"
        with self._guard.unit(write=True) as s:
            run, proj = self._run_for(s, p, run_id, Permission.WRITE, action)
            run.lifecycle_stage = stage
            run.deleted_time = now_ms() if stage == LifecycleStage.DELETED else None
            self._guard.audit(s, p, action, f"run/{run_id}", proj.id)

    def purge_run(self, p: Principal, run_id: str) -> None:
        """Delete a run and everything logged to it for good (blobs go at garbage collection)."""
        with self._guard.unit(write=True) as s:
            run, proj = self._run_for(s, p, run_id, Permission.WRITE, "run.purge")
            s.execute(delete(MetricRow).where(MetricRow.run_seq == run.seq))
            for table in (LatestMetricRow, ParamRow, TagRow, ArtifactRow, RunInputRow):
                s.execute(delete(table).where(table.run_id == run_id))
            s.execute(
                update(RunRow).where(RunRow.parent_run_id == run_id).values(parent_run_id=None)
            )
            s.delete(run)
            self._guard.audit(s, p, "run.purge", f"run/{run_id}", proj.id)

    # -- logging -----------------------------------------------------------------------------

    def log_batch(
        self,
        p: Principal,
        run_id: str,
        *,
        metrics: Sequence[Metric] | MetricColumns = (),
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, object] | None = None,
    ) -> None:
        """Log metric points, params and tags to a run in one transaction.

        Params are write-once: logging the same value again is a no-op, a
        different value is a :class:`Conflict`.
        """
        rows = check.metrics(metrics, self._max_batch_points)
        clean_params = self._strings("param", params)
        clean_tags = self._strings("tag", tags)
        key_ids = self._metric_key_ids(rows[0]) if rows[0] else {}
        with self._guard.unit(write=True) as s:
            run, _ = self._writable_run(s, p, run_id, "run.log")
            if clean_params:
                self._write_params(s, run_id, clean_params)
            for k, v in clean_tags.items():
                s.merge(TagRow(run_id=run_id, key=k, value=v))
            if rows[0]:
                ingest.insert_metrics(s, self._db.dialect, (run_id, run.seq), rows, key_ids)
            if run.heartbeat_at is not None and run.status == RunStatus.RUNNING:
                run.heartbeat_at = now_ms()

    def _write_params(self, s: Session, run_id: str, params: dict[str, str]) -> None:
        existing = dict(
            s.execute(
                select(ParamRow.key, ParamRow.value).where(
                    ParamRow.run_id == run_id, ParamRow.key.in_(list(params))
                )
            ).all()
        )
        for k, v in params.items():
            old = existing.get(k)
            if old is None:
                s.add(ParamRow(run_id=run_id, key=k, value=v))
            elif old != v:
                raise Conflict(
                    f"param {k!r} of run {run_id} is {old!r}; it cannot change to {v!r}. "
                    "Params are write-once: start a new run, or log the value as a tag or metric"
                )

    def delete_tag(self, p: Principal, run_id: str, key: str) -> None:
        with self._guard.unit(write=True) as s:
            self._writable_run(s, p, run_id, "run.log")
            gone = s.execute(delete(TagRow).where(TagRow.run_id == run_id, TagRow.key == key))
            if gone.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"run {run_id} has no tag {key!r}")

    def set_note(self, p: Principal, run_id: str, text: str) -> None:
        """Attach a free-text note (Markdown) to a run."""
        self.log_batch(p, run_id, tags={TAG_NOTE: text})

    def log_inputs(self, p: Principal, run_id: str, inputs: Sequence[RunInput]) -> None:
        """Record what a run read (dataset versions and the like).

        A dataset version stored by mlplane passes the input check first (wired by
        :class:`~mlplane.services.Services`): one flagged with unhandled PII is refused
        unless the input says ``allow_pii``.
        """
        for inp in inputs:
            fields = (inp.kind, inp.name, inp.version, inp.digest, inp.source, inp.context,
                      inp.source_type, inp.schema, inp.profile)  # fmt: skip
            if not all(isinstance(f, str) for f in fields):
                raise InvalidInput("input fields (kind, name, version, ...) must be strings")
            if not inp.kind or not inp.name:
                raise InvalidInput("an input needs a kind and a name")
            check.input_description(inp.schema, inp.profile)
        flags = [
            self.input_check(p, inp) if self.input_check is not None else False for inp in inputs
        ]
        with self._guard.unit(write=True) as s:
            self._writable_run(s, p, run_id, "run.log")
            now = now_ms()
            for inp, unhandled in zip(inputs, flags, strict=True):
                s.add(
                    RunInputRow(
                        run_id=run_id,
                        kind=inp.kind,
                        name=inp.name,
                        version=inp.version,
                        digest=inp.digest,
                        source=inp.source,
                        context=inp.context,
                        created_at=now,
                        unhandled_pii=unhandled,
                        source_type=inp.source_type or None,
                        schema=inp.schema or None,
                        profile=inp.profile or None,
                    )
                )

    def referenced_blobs(self, *, uploads_since_ms: int | None = None) -> set[str]:
        """Blob digests that artifacts, logged models' files and the parts of uploads in
        progress name (garbage collection keeps them). ``uploads_since_ms`` leaves out the
        parts of uploads started before it: those that ``expire_uploads`` drops, so a dry
        run counts their blobs as the real run would."""
        with self._db.read() as s:
            found = {
                d
                for table in (ArtifactRow, LoggedModelArtifactRow)
                for d in s.scalars(select(table.digest).distinct())
            }
            parts = select(ArtifactUploadPartRow.digest).distinct()
            if uploads_since_ms is not None:
                parts = parts.join(
                    ArtifactUploadRow, ArtifactUploadRow.id == ArtifactUploadPartRow.upload_id
                ).where(ArtifactUploadRow.created_at >= uploads_since_ms)
            return found | set(s.scalars(parts))

    def runs_reading(
        self, p: Principal, kind: str, name: str, version: str, *, project: str
    ) -> list[tuple[RunInfo, str, bool]]:
        """Runs of ``project`` that logged this input: (run, context, read with unhandled PII),
        newest first. Runs the caller may not read are left out."""
        with self._guard.unit(write=False) as s:
            rows = s.execute(
                select(RunRow, RunInputRow.context, RunInputRow.unhandled_pii)
                .join(RunInputRow, RunInputRow.run_id == RunRow.id)
                .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
                .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
                .where(
                    RunInputRow.kind == kind,
                    RunInputRow.name == name,
                    RunInputRow.version == version,
                    ProjectRow.name == project,
                )
                .order_by(RunRow.start_time.desc())
            ).all()
            if not rows:
                return []
            proj = s.scalar(select(ProjectRow).where(ProjectRow.name == project))
            self._guard.require(
                p,
                Permission.READ,
                project=project,
                project_id=proj.id if proj else None,
                action="run.read",
                resource=f"dataset/{name}@{version}/lineage",
            )
            seen: set[str] = set()
            out = []
            for run, context, unhandled in rows:
                if run.id in seen:
                    continue
                seen.add(run.id)
                out.append((_rows.run_info(run), context, bool(unhandled)))
            return out

    def get_metric_history(self, p: Principal, run_id: str, key: str) -> list[Metric]:
        """Every point of one metric, ordered by step then time."""
        return self.get_metric_histories(p, run_id, [key]).get(key, [])

    def get_metric_histories(
        self, p: Principal, run_id: str, keys: Sequence[str] | None = None
    ) -> dict[str, list[Metric]]:
        """Histories of several metrics of one run (all when ``keys`` is None)."""
        return self.get_metric_histories_for_runs(p, [run_id], keys)[run_id]

    def get_metric_histories_for_runs(
        self, p: Principal, run_ids: Sequence[str], keys: Sequence[str] | None = None
    ) -> dict[str, dict[str, list[Metric]]]:
        """Histories of several runs at once (run id -> key -> points, by step then time),
        in one query: what comparing a hundred runs' curves needs. Every run must exist and
        be readable by ``p``."""
        ids = list(dict.fromkeys(check.run_id(r) for r in run_ids))
        with self._guard.unit(write=False) as s:
            found = s.execute(
                select(RunRow.id, RunRow.seq, ProjectRow)
                .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
                .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
                .where(RunRow.id.in_(ids))
            ).all()
            missing = sorted(set(ids) - {run_id for run_id, _, _ in found})
            if missing:
                raise NotFound(f"run {missing[0]} does not exist")
            for run_id, _, proj in found:
                self._require(p, Permission.READ, proj, "run.read", f"run/{run_id}")
            by_seq = {seq: run_id for run_id, seq, _ in found}
            out: dict[str, dict[str, list[Metric]]] = {run_id: {} for run_id in ids}
            if not ids:
                return out
            q = (
                select(
                    MetricRow.run_seq,
                    MetricKeyRow.key,
                    MetricRow.value,
                    MetricRow.timestamp,
                    MetricRow.step,
                )
                .join(MetricKeyRow, MetricKeyRow.id == MetricRow.key_id)
                .where(MetricRow.run_seq.in_(list(by_seq)))
            )
            if keys is not None:
                q = q.where(MetricKeyRow.key.in_(list(keys)))
            q = q.order_by(
                MetricRow.run_seq,
                MetricRow.key_id,
                MetricRow.step,
                MetricRow.timestamp,
                MetricRow.id,
            )
            value_out = _rows.value_out
            for seq, k, v, ts, step in s.execute(q):
                out[by_seq[seq]].setdefault(k, []).append(Metric(k, value_out(v), ts, step))
            return out

    # -- search ------------------------------------------------------------------------------

    def search_runs(
        self,
        p: Principal,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None = None,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """Runs matching an MLflow-syntax filter (plus OR and parentheses), paginated."""
        check.max_results(max_results)
        ids = [check.experiment_id(e) for e in experiment_ids]
        expr = search.parse_filter(filter_string)
        order = search.parse_order_by(order_by)
        offset = decode_page_token(page_token)
        view = ViewType(view_type)
        with self._guard.unit(write=False) as s:
            # Core statements and plain rows throughout: at a page of runs with fifty metrics
            # each, ORM loading would be most of the search's time.
            conn = s.connection()
            for eid, project_id, project in conn.execute(
                select(ExperimentRow.id, ProjectRow.id, ProjectRow.name)
                .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
                .where(ExperimentRow.id.in_(ids))
            ):
                self._guard.require(
                    p,
                    Permission.READ,
                    project=project,
                    project_id=project_id,
                    action="run.search",
                    resource=f"experiment/{eid}",
                )
            if not ids:
                return RunPage([], None)
            q = search_sql.build_search_query(ids, expr, order, view.value)
            q = q.with_only_columns(*RunRow.__table__.columns)
            rows = conn.execute(q.offset(offset).limit(max_results + 1)).all()
            more = len(rows) > max_results
            runs = _rows.load_runs(s, rows[:max_results])
            return RunPage(runs, encode_page_token(offset + max_results) if more else None)

    # -- liveness ----------------------------------------------------------------------------

    def heartbeat(self, p: Principal, run_ids: Sequence[str]) -> None:
        """Tell the store these runs' processes are alive."""
        with self._guard.unit(write=True) as s:
            for rid in run_ids:
                run, _ = self._run_for(s, p, rid, Permission.WRITE, "run.log")
                if run.status == RunStatus.RUNNING:
                    run.heartbeat_at = now_ms()

    def reap_stale_runs(self, timeout_s: float) -> int:
        """Mark FAILED every RUNNING run whose heartbeats stopped ``timeout_s`` ago.

        Only runs started with heartbeats are reaped: runs from clients that
        never send them (e.g. stock MLflow clients) stay as their client left them.
        """
        cutoff = now_ms() - int(timeout_s * 1000)
        with self._db.read() as s:
            stale = s.scalar(
                select(func.count())
                .select_from(RunRow)
                .where(RunRow.status == RunStatus.RUNNING, RunRow.heartbeat_at < cutoff)
            )
        if not stale:
            return 0
        with self._db.write() as s:
            rows = list(
                s.scalars(
                    select(RunRow).where(
                        RunRow.status == RunStatus.RUNNING, RunRow.heartbeat_at < cutoff
                    )
                )
            )
            for run in rows:
                run.status = RunStatus.FAILED
                run.end_time = run.heartbeat_at
                run.heartbeat_at = None
                s.merge(TagRow(run_id=run.id, key="mlplane.failure", value="heartbeat lost"))
            return len(rows)


def _status(value: str) -> RunStatus:
    try:
        return RunStatus(str(value).upper())
    except ValueError:
        allowed = ", ".join(s.value for s in RunStatus)
        raise InvalidInput(f"unknown run status {value!r}: use one of {allowed}") from None


_ADJ = ("brave", "calm", "eager", "fast", "gentle", "keen", "lucky", "quiet", "sharp", "wise")
_NOUN = ("otter", "falcon", "lynx", "heron", "panda", "tiger", "whale", "koala", "raven", "fox")


def _generated_name(run_id: str) -> str:
    n = int(run_id[:8], 16)
    return f"{_ADJ[n % 10]}-{_NOUN[(n // 10) % 10]}-{n % 1000}"
