"""What inference workers report, recorded and read back: traffic windows (per deployment,
version and worker), feedback, captured payload files and the workers' liveness; the
status and A/B report built from them.

Workers report in bulk and off the request path (a window every couple of seconds), so
the database sees a few rows per second whatever the request rate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from mlplane import projects
from mlplane.db.engine import now_ms
from mlplane.errors import InvalidInput, PermissionDenied
from mlplane.security import Permission, Principal
from mlplane.serving.entities import Deployment, DeploymentStatus, VersionTraffic
from mlplane.serving.tables import (
    CaptureFileRow,
    DeploymentRow,
    FeedbackRow,
    ServingWorkerRow,
    StatsWindowRow,
)

if TYPE_CHECKING:
    from mlplane.projects.tables import ProjectRow
    from mlplane.serving.stats import WindowStats

K = TypeVar("K", bound=Hashable)

WORKER_ALIVE_MS = 15_000
"""A worker not seen for this long is listed as gone."""
MAX_LABEL_BYTES = 64 * 1024
MAX_TIMELINE_S = 400 * 86_400
MAX_TIMELINE_BUCKETS = 100_000
"""A timeline's longest span and most buckets: bounded work for any query."""


def version_from_request_id(request_id: str) -> int | None:
    """The version in a request id the server made (``r<version>-<hex>``), else None."""
    if request_id.startswith("r") and "-" in request_id:
        head = request_id[1:].split("-", 1)[0]
        if head.isdigit():
            return int(head)
    return None


def _traffic(version: int, kind: str, w: WindowStats) -> VersionTraffic:
    return VersionTraffic(
        version=version,
        kind=kind,
        requests=w.requests,
        errors=w.errors,
        rejected=w.rejected,
        error_rate=w.error_rate,
        p50_ms=w.latency_ms.quantile(0.5),
        p99_ms=w.latency_ms.quantile(0.99),
        rows=w.rows,
        mean_batch=w.batch_sizes.mean if w.batch_sizes.count else None,
    )


class TrafficMixin:
    """Traffic, feedback and captures of :class:`~mlplane.serving.service.DeploymentService`."""

    _db: Any
    _guard: Any
    if TYPE_CHECKING:

        def _row(
            self, s: Session, p: Principal, name: str, project: str, perm: Permission, action: str
        ) -> tuple[ProjectRow, DeploymentRow]: ...
        def _entity(self, s: Session, row: DeploymentRow, project: str) -> Deployment: ...

    # -- recording (the inference workers) ---------------------------------------------------

    def record_windows(self, p: Principal, windows: Sequence[dict[str, Any]]) -> None:
        """Store traffic windows: dicts with deployment_id, version, kind (live|shadow),
        worker, window_start, window_end (ms) and stats (``WindowStats.to_dict()``)."""
        self._guard.require_platform_admin(p, action="deployment.report", resource="deployment/*")
        if not windows:
            return
        rows = [
            {
                "deployment_id": int(w["deployment_id"]),
                "version": int(w["version"]),
                "kind": str(w.get("kind", "live")),
                "worker": str(w["worker"])[:64],
                "window_start": int(w["window_start"]),
                "window_end": int(w["window_end"]),
                "stats": json.dumps(w["stats"]),
            }
            for w in windows
        ]
        with self._db.write() as s:
            ids = {r["deployment_id"] for r in rows}
            known = set(s.scalars(select(DeploymentRow.id).where(DeploymentRow.id.in_(ids))))
            rows = [r for r in rows if r["deployment_id"] in known]  # deleted meanwhile
            if rows:
                s.execute(insert(StatsWindowRow), rows)

    def heartbeat_worker(
        self, p: Principal, worker_id: str, *, pid: int, host: str, state: dict[str, Any]
    ) -> None:
        """A worker is alive and has ``state`` loaded."""
        self._guard.require_platform_admin(p, action="deployment.report", resource="deployment/*")
        now = now_ms()
        with self._db.write() as s:
            row = s.get(ServingWorkerRow, worker_id)
            if row is None:
                row = ServingWorkerRow(id=worker_id, pid=pid, host=host, started_at=now)
                s.add(row)
            row.seen_at = now
            row.state = json.dumps(state, default=str)

    def forget_worker(self, p: Principal, worker_id: str) -> None:
        self._guard.require_platform_admin(p, action="deployment.report", resource="deployment/*")
        with self._db.write() as s:
            s.execute(delete(ServingWorkerRow).where(ServingWorkerRow.id == worker_id))

    def record_capture(
        self,
        p: Principal,
        deployment_id: int,
        *,
        hour: str,
        chunks: list[tuple[str, int]],
        rows: int,
        size: int,
        first_time: int,
        last_time: int,
        worker: str,
    ) -> None:
        """Index one captured Parquet file (stored as encrypted chunks) under its hour."""
        self._guard.require_platform_admin(p, action="deployment.report", resource="deployment/*")
        with self._db.write() as s:
            if s.get(DeploymentRow, deployment_id) is None:
                return
            s.add(
                CaptureFileRow(
                    deployment_id=deployment_id,
                    hour=hour,
                    chunks=json.dumps([list(c) for c in chunks]),
                    rows=rows,
                    size=size,
                    first_time=first_time,
                    last_time=last_time,
                    worker=worker[:64],
                    created_at=now_ms(),
                )
            )

    def prune(self, p: Principal, *, older_than_ms: int) -> int:
        """Drop traffic windows older than ``older_than_ms`` (captures stay: they are data)."""
        self._guard.require_platform_admin(p, action="deployment.prune", resource="deployment/*")
        cutoff = now_ms() - older_than_ms
        with self._db.write() as s:
            result = s.execute(delete(StatsWindowRow).where(StatsWindowRow.window_end < cutoff))
            s.execute(delete(ServingWorkerRow).where(ServingWorkerRow.seen_at < cutoff))
            return int(result.rowcount or 0)

    def referenced_chunks(self, *, session: Session) -> set[str]:
        """Digests of every chunk a captured payload file lists: garbage collection keeps
        them (captures are data, kept until their deployment is deleted)."""
        out: set[str] = set()
        for (chunks,) in session.execute(
            select(CaptureFileRow.chunks).execution_options(yield_per=500)
        ):
            out.update(d for d, _ in json.loads(chunks))
        return out

    # -- reading -----------------------------------------------------------------------------

    def traffic_since(
        self, deployment_id: int, since: int, until: int, kind: str = "live"
    ) -> dict[int, WindowStats]:
        """Every worker's windows of ``kind`` that ended in (since, until], merged per
        version."""
        return self._merged(deployment_id, since, until, lambda v, k, end: v, kind=kind)

    def _merged(
        self,
        deployment_id: int,
        since: int,
        until: int,
        key: Callable[[int, str, int], K],
        *,
        kind: str | None = None,
    ) -> dict[K, WindowStats]:
        """The windows that ended in (since, until], merged by ``key(version, kind, end)``."""
        from mlplane.serving.stats import WindowStats

        stmt = select(
            StatsWindowRow.version,
            StatsWindowRow.kind,
            StatsWindowRow.window_end,
            StatsWindowRow.stats,
        ).where(
            StatsWindowRow.deployment_id == deployment_id,
            StatsWindowRow.window_end > since,
            StatsWindowRow.window_end <= until,
        )
        if kind is not None:
            stmt = stmt.where(StatsWindowRow.kind == kind)
        out: dict[K, WindowStats] = {}
        with self._db.read() as s:
            for version, kind_, end, raw in s.execute(stmt):
                w = WindowStats.from_dict(json.loads(raw))
                k = key(version, kind_, end)
                if k in out:
                    out[k].merge(w)
                else:
                    out[k] = w
        return out

    def status(
        self,
        p: Principal,
        name: str,
        *,
        window_s: float = 300.0,
        project: str = projects.DEFAULT_PROJECT,
    ) -> DeploymentStatus:
        """The deployment, its rollout, each version's traffic over the last ``window_s``
        seconds, and the workers serving it."""
        if window_s <= 0:
            raise InvalidInput("the status window must be above 0 seconds")
        now = now_ms()
        since = now - int(window_s * 1000)
        with self._guard.unit(write=False) as s:
            _, row = self._row(s, p, name, project, Permission.READ, "deployment.read")
            deployment = self._entity(s, row, project)
            workers = []
            for w in s.scalars(
                select(ServingWorkerRow).where(ServingWorkerRow.seen_at >= now - WORKER_ALIVE_MS)
            ):
                state = json.loads(w.state or "{}")
                mine = (state.get("deployments") or {}).get(str(row.id))
                if mine is not None:
                    workers.append(
                        {"worker": w.id, "pid": w.pid, "host": w.host, "seen_at": w.seen_at, **mine}
                    )
        merged = self._merged(deployment.deployment_id, since, now, lambda v, k, end: (k, v))
        order = {"live": 0, "shadow": 1}
        traffic = [
            _traffic(v, k, stats)
            for (k, v), stats in sorted(
                merged.items(), key=lambda item: (order.get(item[0][0], 2), item[0][1])
            )
        ]
        return DeploymentStatus(
            deployment=deployment, traffic=traffic, since=since, workers=workers
        )

    def timeline(
        self,
        p: Principal,
        name: str,
        *,
        since_s: float = 3600.0,
        bucket_s: float = 60.0,
        project: str = projects.DEFAULT_PROJECT,
    ) -> list[dict[str, Any]]:
        """Request rate, error rate and latency per version over time, in buckets: what the
        UI and reports chart. Each item: time (bucket start, ms), version, kind, requests,
        errors, error_rate, p50_ms, p99_ms, rps."""

        if not (math.isfinite(since_s) and math.isfinite(bucket_s)):
            raise InvalidInput("since and bucket must be finite numbers of seconds")
        if bucket_s < 1 or since_s <= 0:
            raise InvalidInput("the bucket must be at least 1 second and since above 0 seconds")
        if since_s > MAX_TIMELINE_S or since_s / bucket_s > MAX_TIMELINE_BUCKETS:
            raise InvalidInput(
                f"a timeline spans at most {MAX_TIMELINE_S // 86_400:.0f} days in at most "
                f"{MAX_TIMELINE_BUCKETS:,} buckets: widen the bucket or shorten since"
            )
        now = now_ms()
        since = now - int(since_s * 1000)
        bucket = int(bucket_s * 1000)
        with self._guard.unit(write=False) as s:
            _, row = self._row(s, p, name, project, Permission.READ, "deployment.read")
            deployment_id = row.id
        merged = self._merged(
            deployment_id, since, now, lambda v, k, end: ((end // bucket) * bucket, v, k)
        )
        return [
            {
                "time": t,
                "version": v,
                "kind": k,
                "requests": w.requests,
                "errors": w.errors,
                "error_rate": w.error_rate,
                "p50_ms": w.latency_ms.quantile(0.5),
                "p99_ms": w.latency_ms.quantile(0.99),
                "rps": w.requests / bucket_s,
            }
            for (t, v, k), w in sorted(merged.items())
        ]

    # -- feedback and A/B --------------------------------------------------------------------

    def record_feedback(
        self,
        p: Principal,
        name: str,
        request_id: str,
        label: Any,
        *,
        version: int | None = None,
        prediction: Any = None,
        project: str = projects.DEFAULT_PROJECT,
    ) -> None:
        """Ground truth (or an outcome) for an answered request; a second report for the
        same request replaces the first."""
        request_id = str(request_id or "").strip()
        if not request_id or len(request_id) > 100:
            raise InvalidInput("request_id must be the 1-100 character id the answer carried")
        text = json.dumps(label)
        if len(text) > MAX_LABEL_BYTES:
            raise InvalidInput("the label is larger than 64 KiB")
        version = version if version is not None else version_from_request_id(request_id)
        with self._guard.unit(write=True) as s:
            _, row = self._row(s, p, name, project, Permission.PREDICT, "deployment.feedback")
            if p.deployments is not None and name not in p.deployments:
                raise PermissionDenied(
                    f"{p.name}'s token may only call {', '.join(sorted(p.deployments))}"
                )
            old = s.scalar(
                select(FeedbackRow).where(
                    FeedbackRow.deployment_id == row.id, FeedbackRow.request_id == request_id
                )
            )
            if old is None:
                old = FeedbackRow(deployment_id=row.id, request_id=request_id)
                s.add(old)
            old.version = version if version is not None else old.version
            old.label = text
            if prediction is not None:
                old.prediction = json.dumps(prediction, default=str)
            old.time = now_ms()
            old.actor = p.name

    def ab_report(
        self,
        p: Principal,
        name: str,
        *,
        since_s: float | None = None,
        alpha: float = 0.05,
        project: str = projects.DEFAULT_PROJECT,
    ) -> dict[str, Any]:
        """Per-variant traffic and outcomes, each variant compared with the control (the
        first): error rate, mean latency, and where feedback arrived, the mean outcome
        (the label as a number) and accuracy (prediction equals label)."""
        from mlplane.serving import abstats

        now = now_ms()
        with self._guard.unit(write=False) as s:
            _, row = self._row(s, p, name, project, Permission.READ, "deployment.read")
            deployment = self._entity(s, row, project)
            since = now - int(since_s * 1000) if since_s else self._ab_started(s, row)
            feedback = s.execute(
                select(FeedbackRow.version, FeedbackRow.label, FeedbackRow.prediction).where(
                    FeedbackRow.deployment_id == row.id, FeedbackRow.time >= since
                )
            ).all()
        traffic = self.traffic_since(deployment.deployment_id, since, now)
        variants = [v.version for v in deployment.routing.variants]
        outcomes: dict[int, abstats.Moments] = {v: abstats.Moments() for v in variants}
        correct: dict[int, list[int]] = {v: [0, 0] for v in variants}
        unattributed = 0
        for version, label_raw, pred_raw in feedback:
            if version not in outcomes:
                unattributed += 1
                continue
            label = json.loads(label_raw)
            if isinstance(label, bool | int | float):
                outcomes[version].add_many([float(label)])
            if pred_raw is not None:
                correct[version][1] += 1
                correct[version][0] += int(json.loads(pred_raw) == label)
        rows = []
        for v in variants:
            w = traffic.get(v)
            rows.append(
                {
                    "version": v,
                    "percent": deployment.routing.percents()[v],
                    "requests": w.requests if w else 0,
                    "errors": w.errors if w else 0,
                    "error_rate": w.error_rate if w else 0.0,
                    "p50_ms": w.latency_ms.quantile(0.5) if w else None,
                    "p99_ms": w.latency_ms.quantile(0.99) if w else None,
                    "mean_latency_ms": w.latency_ms.mean if w and w.latency_ms.count else None,
                    "feedback": outcomes[v].n,
                    "mean_outcome": outcomes[v].mean if outcomes[v].n else None,
                    "accuracy": correct[v][0] / correct[v][1] if correct[v][1] else None,
                    "outputs": w.outputs.to_dict() if w else None,
                }
            )
        comparisons: list[dict[str, Any]] = []

        def compare(variant: int, metric: str, result: abstats.Comparison) -> None:
            comparisons.append({"variant": variant, **result.to_dict(), "metric": metric})

        control = variants[0]
        wc = traffic.get(control)
        for v in variants[1:]:
            wv = traffic.get(v)
            if wc and wv and wc.requests and wv.requests:
                compare(
                    v,
                    "error_rate",
                    abstats.compare_proportions(
                        wc.errors, wc.requests, wv.errors, wv.requests, alpha=alpha
                    ),
                )
            oc, ov = outcomes[control], outcomes[v]
            if oc.n >= 2 and ov.n >= 2:
                compare(
                    v,
                    "outcome",
                    abstats.compare_means(
                        oc.n, oc.mean, oc.variance, ov.n, ov.mean, ov.variance, alpha=alpha
                    ),
                )
            cc, cv = correct[control], correct[v]
            if cc[1] and cv[1]:
                compare(
                    v,
                    "accuracy",
                    abstats.compare_proportions(cc[0], cc[1], cv[0], cv[1], alpha=alpha),
                )
        return {
            "deployment": deployment.name,
            "mode": deployment.routing.mode,
            "control": control,
            "since": since,
            "until": now,
            "variants": rows,
            "comparisons": comparisons,
            "unattributed_feedback": unattributed,
        }

    @staticmethod
    def _ab_started(s: Session, row: DeploymentRow) -> int:
        """When the current split began: the A/B report covers only traffic under it."""
        from mlplane.serving.tables import DeploymentEventRow

        started = s.scalar(
            select(DeploymentEventRow.time)
            .where(
                DeploymentEventRow.deployment_id == row.id,
                DeploymentEventRow.action.in_(
                    ("ab", "create", "route", "rollback", "canary.promote")
                ),
            )
            .order_by(DeploymentEventRow.id.desc())
            .limit(1)
        )
        return int(started or row.created_at)

    def captures(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> tuple[Deployment, list[dict[str, Any]]]:
        """The deployment and its captured payload files (hour, rows, size, chunks), oldest
        first. Reading them is audited: payloads are data."""
        with self._guard.unit(write=True) as s:
            proj, row = self._row(s, p, name, project, Permission.READ, "deployment.captures")
            files = [
                {
                    "hour": c.hour,
                    "rows": c.rows,
                    "size": c.size,
                    "first_time": c.first_time,
                    "last_time": c.last_time,
                    "worker": c.worker,
                    "chunks": [tuple(x) for x in json.loads(c.chunks)],
                }
                for c in s.scalars(
                    select(CaptureFileRow)
                    .where(CaptureFileRow.deployment_id == row.id)
                    .order_by(CaptureFileRow.id)
                )
            ]
            self._guard.audit(
                s,
                p,
                "deployment.captures.read",
                f"deployment/{name}",
                proj.id,
                details={"files": len(files)},
            )
            return self._entity(s, row, project), files
