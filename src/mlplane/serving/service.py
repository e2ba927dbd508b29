"""Deployment use cases: create, change the traffic split (canary, shadow, A/B), roll back,
read the history and the status.

Every change bumps the deployment's ``generation`` and appends a
:class:`~mlplane.serving.tables.DeploymentEventRow` holding the routing in force after
it, in the same transaction as an audit event; inference workers poll the generations
and pick a change up within their poll interval. Canary rollouts are driven by
:mod:`mlplane.serving._rollouts`; what workers report (traffic windows, feedback,
captured payloads) is recorded and read by :mod:`mlplane.serving._traffic`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplane import projects
from mlplane.db.engine import Database, now_ms
from mlplane.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from mlplane.projects import service as project_rows
from mlplane.projects.tables import ProjectRow
from mlplane.registry import uri
from mlplane.security import Guard, Permission, Principal
from mlplane.serving._rollouts import RolloutMixin
from mlplane.serving._traffic import TrafficMixin
from mlplane.serving.entities import (
    Deployment,
    DeploymentConfig,
    DeploymentEvent,
    Routing,
    Shadow,
    Variant,
    check_name,
)
from mlplane.serving.tables import DeploymentEventRow, DeploymentRow, RolloutRow


class DeploymentService(RolloutMixin, TrafficMixin):
    """Deployments over the metadata database; model versions come from the registry."""

    def __init__(
        self,
        db: Database,
        guard: Guard,
        registry: Any,
        *,
        principal_now: Callable[[Principal], Principal | None] | None = None,
    ) -> None:
        self._db = db
        self._guard = guard
        self._registry = registry
        self._principal_now = principal_now
        """Who a stored actor is *now* (roles re-read), for actions taken on their behalf."""

    # -- helpers -----------------------------------------------------------------------------

    def _project(
        self, s: Session, p: Principal, project: str, perm: Permission, action: str, res: str
    ) -> ProjectRow:
        return project_rows.guarded(
            s,
            self._guard,
            p,
            project,
            perm,
            action=action,
            resource=res,
            create=perm is not Permission.READ,
            holds="deployments",
        )

    def _row(
        self, s: Session, p: Principal, name: str, project: str, perm: Permission, action: str
    ) -> tuple[ProjectRow, DeploymentRow]:
        try:
            proj = self._project(s, p, project, perm, action, f"deployment/{name}")
        except NotFound:
            raise NotFound(f"no deployment named {name!r} in project {project!r}") from None
        stmt = select(DeploymentRow).where(
            DeploymentRow.project_id == proj.id, DeploymentRow.name == name
        )
        if perm is not Permission.READ:
            stmt = stmt.with_for_update()
        row = s.scalar(stmt)
        if row is None:
            known = sorted(
                s.scalars(select(DeploymentRow.name).where(DeploymentRow.project_id == proj.id))
            )
            raise NotFound(
                f"no deployment named {name!r} in project {project!r}"
                + (f"; deployments: {', '.join(known[:20])}" if known else "")
            )
        return proj, row

    def _version(self, p: Principal, model: str, ref: str, project: str) -> tuple[int, str]:
        """The version number ``ref`` points at now, and the selector it was given by."""
        name, selector = uri.parse(ref)
        if name != model:
            raise InvalidInput(
                f"{ref!r} is a version of {name!r}, but this deployment serves {model!r}: "
                "a deployment routes between versions of one model"
            )
        version = self._registry.get_version(p, ref, project=project)
        return int(version.version), selector

    def _model_of(self, p: Principal, name: str, project: str) -> str:
        """The registered model a deployment serves (read before resolving a version of it
        in the registry, outside the write that changes the deployment)."""
        with self._guard.unit(write=False) as s:
            return self._row(s, p, name, project, Permission.READ, "deployment.read")[1].model_name

    def _change(
        self,
        s: Session,
        p: Principal,
        proj: ProjectRow,
        row: DeploymentRow,
        action: str,
        routing: Routing,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Put ``routing`` in force, bump the generation, record the event and audit it."""
        now = now_ms()
        row.routing = json.dumps(routing.to_dict())
        row.generation += 1
        row.updated_at, row.updated_by = now, p.name
        s.add(
            DeploymentEventRow(
                deployment_id=row.id,
                generation=row.generation,
                time=now,
                actor=p.name,
                action=action,
                routing=row.routing,
                details=json.dumps(details or {}, default=str),
            )
        )
        audit = {"generation": row.generation, "split": routing.percents(), **(details or {})}
        if routing.shadow is not None:
            audit["shadow"] = {"version": routing.shadow.version, "percent": routing.shadow.percent}
        self._guard.audit(
            s, p, f"deployment.{action}", f"deployment/{row.name}", proj.id, details=audit
        )

    def _entity(self, s: Session, row: DeploymentRow, project: str) -> Deployment:
        rollout = s.scalar(
            select(RolloutRow)
            .where(RolloutRow.deployment_id == row.id)
            .order_by(RolloutRow.id.desc())
            .limit(1)
        )
        return Deployment(
            deployment_id=row.id,
            name=row.name,
            project=project,
            model=row.model_name,
            model_ref=row.model_ref,
            routing=Routing.from_dict(json.loads(row.routing)),
            config=DeploymentConfig.from_dict(json.loads(row.config)),
            generation=row.generation,
            created_at=row.created_at,
            created_by=row.created_by,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
            rollout=self._rollout_entity(rollout) if rollout is not None else None,
        )

    @staticmethod
    def _running(s: Session, row: DeploymentRow) -> RolloutRow | None:
        return s.scalar(
            select(RolloutRow).where(
                RolloutRow.deployment_id == row.id, RolloutRow.status == "running"
            )
        )

    def _no_rollout(self, s: Session, row: DeploymentRow, what: str) -> None:
        if self._running(s, row) is not None:
            raise Conflict(
                f"deployment {row.name!r} has a canary rollout running; wait for it to end, "
                f"or `mlplane deploy rollback {row.name}`, before you {what}"
            )

    # -- deployments -------------------------------------------------------------------------

    def create(
        self,
        p: Principal,
        name: str,
        model_ref: str,
        *,
        config: dict[str, Any] | DeploymentConfig | None = None,
        project: str = projects.DEFAULT_PROJECT,
    ) -> Deployment:
        """Deploy ``model_ref`` (``fraud@champion``, ``fraud@3``) as ``name``, all traffic on
        the version it points at now. A later promotion moves that alias."""
        check_name(name)
        model, _ = uri.parse(model_ref)
        cfg = config if isinstance(config, DeploymentConfig) else DeploymentConfig.from_dict(config)
        version, _ = self._version(p, model, model_ref, project)
        with self._guard.unit(write=True) as s:
            proj = self._project(
                s, p, project, Permission.WRITE, "deployment.create", f"deployment/{name}"
            )
            exists = s.scalar(
                select(DeploymentRow.id).where(
                    DeploymentRow.project_id == proj.id, DeploymentRow.name == name
                )
            )
            if exists is not None:
                raise AlreadyExists(f"deployment {name!r} exists already in project {project!r}")
            now = now_ms()
            row = DeploymentRow(
                project_id=proj.id,
                name=name,
                model_name=model,
                model_ref=model_ref.strip(),
                routing="{}",
                config=json.dumps(cfg.to_dict()),
                generation=0,
                created_at=now,
                created_by=p.name,
                updated_at=now,
                updated_by=p.name,
            )
            s.add(row)
            s.flush()
            self._change(
                s,
                p,
                proj,
                row,
                "create",
                Routing.single(version),
                {"model": model_ref, "version": version, "config": cfg.to_dict()},
            )
            s.flush()
            return self._entity(s, row, project)

    def get(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> Deployment:
        with self._guard.unit(write=False) as s:
            _, row = self._row(s, p, name, project, Permission.READ, "deployment.read")
            return self._entity(s, row, project)

    def list_deployments(
        self, p: Principal, *, project: str = projects.DEFAULT_PROJECT
    ) -> list[Deployment]:
        with self._guard.unit(write=False) as s:
            try:
                proj = self._project(
                    s, p, project, Permission.READ, "deployment.list", "deployment/*"
                )
            except NotFound:
                return []
            rows = s.scalars(
                select(DeploymentRow)
                .where(DeploymentRow.project_id == proj.id)
                .order_by(DeploymentRow.name)
            )
            return [self._entity(s, r, project) for r in rows]

    def configure(
        self,
        p: Principal,
        name: str,
        changes: dict[str, Any],
        *,
        project: str = projects.DEFAULT_PROJECT,
    ) -> Deployment:
        """Change serving settings (batching, capture, replicas, …); see
        :class:`~mlplane.serving.entities.DeploymentConfig`."""
        with self._guard.unit(write=True) as s:
            proj, row = self._row(s, p, name, project, Permission.WRITE, "deployment.configure")
            cfg = DeploymentConfig.from_dict(json.loads(row.config)).replace(**changes)
            row.config = json.dumps(cfg.to_dict())
            routing = Routing.from_dict(json.loads(row.routing))
            self._change(s, p, proj, row, "configure", routing, {"changes": changes})
            s.flush()
            return self._entity(s, row, project)

    def delete(self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT) -> None:
        with self._guard.unit(write=True) as s:
            proj, row = self._row(s, p, name, project, Permission.WRITE, "deployment.delete")
            self._guard.audit(
                s,
                p,
                "deployment.delete",
                f"deployment/{name}",
                proj.id,
                details={"generation": row.generation},
            )
            s.delete(row)

    def history(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> list[DeploymentEvent]:
        """Every change of the deployment, oldest first."""
        with self._guard.unit(write=False) as s:
            _, row = self._row(s, p, name, project, Permission.READ, "deployment.read")
            rows = s.scalars(
                select(DeploymentEventRow)
                .where(DeploymentEventRow.deployment_id == row.id)
                .order_by(DeploymentEventRow.id)
            )
            return [
                DeploymentEvent(
                    seq=e.id,
                    generation=e.generation,
                    time=e.time,
                    actor=e.actor,
                    action=e.action,
                    routing=Routing.from_dict(json.loads(e.routing)),
                    details=json.loads(e.details or "{}"),
                )
                for e in rows
            ]

    # -- traffic -----------------------------------------------------------------------------

    def set_shadow(
        self,
        p: Principal,
        name: str,
        model_ref: str | None,
        percent: float,
        *,
        project: str = projects.DEFAULT_PROJECT,
    ) -> Deployment:
        """Mirror ``percent`` % of requests to ``model_ref``; ``percent`` 0 (or no ref)
        stops mirroring."""
        if not 0 <= percent <= 100:
            raise InvalidInput("the shadow percent must be between 0 and 100")
        model = self._model_of(p, name, project)
        version = None
        if model_ref and percent > 0:
            version, _ = self._version(p, model, model_ref, project)
        with self._guard.unit(write=True) as s:
            proj, row = self._row(s, p, name, project, Permission.WRITE, "deployment.shadow")
            current = Routing.from_dict(json.loads(row.routing))
            shadow = Shadow(version, float(percent)) if version is not None else None
            if shadow is not None and shadow.version in {v.version for v in current.variants}:
                raise InvalidInput(
                    f"version {shadow.version} already answers live traffic here; "
                    "shadow a version that is not in the split"
                )
            routing = Routing(current.variants, shadow, current.sticky_header, current.mode)
            self._change(
                s,
                p,
                proj,
                row,
                "shadow",
                routing,
                {"model": model_ref, "version": version, "percent": percent},
            )
            s.flush()
            return self._entity(s, row, project)

    def start_ab(
        self,
        p: Principal,
        name: str,
        variants: Sequence[tuple[str, float]],
        *,
        sticky_header: str | None = None,
        project: str = projects.DEFAULT_PROJECT,
    ) -> Deployment:
        """Split traffic between ``variants`` (``[("fraud@3", 50), ("fraud@4", 50)]``) for an
        A/B experiment; the first is the control. With ``sticky_header`` a caller keeps
        their variant (consistent hashing of that header's value)."""
        if len(variants) < 2:
            raise InvalidInput("an A/B experiment needs at least two variants, e.g. m@3:50,m@4:50")
        if sticky_header is not None and not sticky_header.strip():
            raise InvalidInput("the sticky header name is empty")
        model = self._model_of(p, name, project)
        resolved = [(self._version(p, model, ref, project)[0], float(w)) for ref, w in variants]
        routing_variants = tuple(
            Variant(v, w, "stable" if i == 0 else "variant") for i, (v, w) in enumerate(resolved)
        )
        with self._guard.unit(write=True) as s:
            proj, row = self._row(s, p, name, project, Permission.WRITE, "deployment.ab")
            self._no_rollout(s, row, "start an A/B experiment")
            current = Routing.from_dict(json.loads(row.routing))
            routing = Routing(
                routing_variants,
                current.shadow_unless(v for v, _ in resolved),
                sticky_header.strip() if sticky_header else None,
                "ab",
            )
            self._change(
                s,
                p,
                proj,
                row,
                "ab",
                routing,
                {"variants": [f"{r}:{w:g}" for r, w in variants], "sticky_header": sticky_header},
            )
            s.flush()
            return self._entity(s, row, project)

    def set_split(
        self,
        p: Principal,
        name: str,
        model_ref: str,
        *,
        project: str = projects.DEFAULT_PROJECT,
    ) -> Deployment:
        """Send all live traffic to ``model_ref`` (ending an A/B experiment)."""
        model = self._model_of(p, name, project)
        version, _ = self._version(p, model, model_ref, project)
        with self._guard.unit(write=True) as s:
            proj, row = self._row(s, p, name, project, Permission.WRITE, "deployment.route")
            self._no_rollout(s, row, "change the split")
            current = Routing.from_dict(json.loads(row.routing))
            routing = Routing.single(version, current.shadow)
            self._change(
                s, p, proj, row, "route", routing, {"model": model_ref, "version": version}
            )
            s.flush()
            return self._entity(s, row, project)

    def rollback(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> Deployment:
        """Undo the last change of traffic: a running canary goes back to its stable
        version at once; otherwise the routing before the last change is restored."""
        with self._guard.unit(write=True) as s:
            proj, row = self._row(s, p, name, project, Permission.WRITE, "deployment.rollback")
            running = self._running(s, row)
            current = Routing.from_dict(json.loads(row.routing))
            if running is not None:
                self._end_rollout(s, running, "rolled_back", f"rolled back by {p.name}")
                routing = Routing.single(running.stable_version, current.shadow)
                details = {"rollout": running.id, "to": running.stable_version}
            else:
                events = list(
                    s.scalars(
                        select(DeploymentEventRow)
                        .where(DeploymentEventRow.deployment_id == row.id)
                        .order_by(DeploymentEventRow.id.desc())
                    )
                )
                previous = next(
                    (e for e in events[1:] if e.routing != row.routing and e.action != "rollback"),
                    None,
                )
                if previous is None:
                    raise Conflict(f"deployment {name!r} has no earlier traffic split to return to")
                routing = Routing.from_dict(json.loads(previous.routing))
                details = {"to_generation": previous.generation}
            self._change(s, p, proj, row, "rollback", routing, details)
            s.flush()
            return self._entity(s, row, project)

    # -- for the inference workers -----------------------------------------------------------

    def generations(self, p: Principal) -> dict[int, int]:
        """Every deployment's id and generation: what workers poll, cheaply."""
        self._guard.require_platform_admin(p, action="deployment.serve", resource="deployment/*")
        with self._db.read() as s:
            return {i: g for i, g in s.execute(select(DeploymentRow.id, DeploymentRow.generation))}

    def active(self, p: Principal, ids: Sequence[int] | None = None) -> list[Deployment]:
        """The deployments (of every project, or those with ``ids``) as a worker serves them."""
        self._guard.require_platform_admin(p, action="deployment.serve", resource="deployment/*")
        with self._db.read() as s:
            stmt = select(DeploymentRow, ProjectRow.name).join(
                ProjectRow, ProjectRow.id == DeploymentRow.project_id
            )
            if ids is not None:
                stmt = stmt.where(DeploymentRow.id.in_(list(ids)))
            return [
                self._entity(s, row, proj)
                for row, proj in s.execute(stmt.order_by(DeploymentRow.id))
            ]
