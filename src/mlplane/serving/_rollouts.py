"""Canary rollouts: start one, judge it every interval on live traffic, promote or roll back.

State lives in ``deployment_rollouts``, so a restarted server resumes a rollout where it
was. :meth:`RolloutMixin.advance_rollouts` is called by the serving supervisor's control
loop (any number of them may run: each check takes the rollout row's lock and re-reads
it, so a check is made once). Each check compares the canary with the stable version
over the traffic since the step began (:func:`mlplane.serving.analysis.judge`):

* ``pass``: the next step's weight, or after the last step the promotion: the alias the
  deployment follows (``fraud@champion``) is moved through the registry's approval rules,
  on behalf of whoever started the rollout, with no more roles than they had then and
  have now. A refused promotion sends traffic back to stable (status ``blocked``).
* ``fail``: counts toward ``failure_limit``; reaching it rolls back to stable and alerts.
* ``inconclusive`` (too little traffic): the step waits another interval.

Every check and every outcome is a deployment event and an audit event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplane import projects
from mlplane.db.engine import now_ms
from mlplane.errors import Conflict, InvalidInput, MlplaneError
from mlplane.projects.tables import ProjectRow
from mlplane.security import Permission, Principal
from mlplane.serving.entities import Deployment, Rollout, Routing, Variant
from mlplane.serving.tables import DeploymentRow, RolloutRow

log = logging.getLogger("mlplane.serving.rollouts")
ALERT = "mlplane.serving.alerts"
"""The logger alerts go to (a rolled-back or blocked rollout)."""


def parse_interval(text: str | float) -> float:
    """``60``, ``60s``, ``2m``, ``1h`` or ``500ms`` as seconds."""
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = text.strip().lower()
        scale = 1.0
        for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if raw.endswith(suffix):
                raw, scale = raw[: -len(suffix)], factor
                break
        try:
            value = float(raw) * scale
        except ValueError:
            raise InvalidInput(f"{text!r} is not an interval: use e.g. 60s, 2m or 500ms") from None
    if not 0.1 <= value <= 86_400:
        raise InvalidInput("the interval must be between 100ms and 24h")
    return value


def check_steps(steps: Sequence[float]) -> list[float]:
    out = [float(x) for x in steps]
    if not out:
        raise InvalidInput("a canary needs at least one step, e.g. --steps 10,25,50,100")
    if any(not 0 < x <= 100 for x in out) or out != sorted(out) or len(set(out)) != len(out):
        raise InvalidInput("canary steps must rise strictly, each above 0 and at most 100 percent")
    return out


def _thresholds(raw: dict[str, Any]) -> dict[str, Any]:
    from mlplane.serving.analysis import CanaryThresholds

    known = {f.name for f in fields(CanaryThresholds)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(
            f"unknown canary threshold(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    clean = {k: v for k, v in raw.items() if v is not None}
    CanaryThresholds(**clean)  # validates
    return clean


def _split(stable: int, canary: int, percent: float) -> tuple[Variant, ...]:
    if percent >= 100:
        return (Variant(stable, 0.0, "stable"), Variant(canary, 100.0, "canary"))
    return (Variant(stable, 100.0 - percent, "stable"), Variant(canary, percent, "canary"))


class RolloutMixin:
    """Canary rollouts of :class:`~mlplane.serving.service.DeploymentService`."""

    # -- provided by the service (declared for the type checker only: defining them here
    # would shadow the service's own in the method resolution order) --
    _guard: Any
    _registry: Any
    _principal_now: Any
    if TYPE_CHECKING:

        def _row(
            self, s: Session, p: Principal, name: str, project: str, perm: Permission, action: str
        ) -> tuple[ProjectRow, DeploymentRow]: ...
        def _change(
            self,
            s: Session,
            p: Principal,
            proj: ProjectRow,
            row: DeploymentRow,
            action: str,
            routing: Routing,
            details: dict[str, Any] | None = None,
        ) -> None: ...
        def _entity(self, s: Session, row: DeploymentRow, project: str) -> Deployment: ...
        def _version(self, p: Principal, model: str, ref: str, project: str) -> tuple[int, str]: ...
        def _running(self, s: Session, row: DeploymentRow) -> RolloutRow | None: ...
        def _no_rollout(self, s: Session, row: DeploymentRow, what: str) -> None: ...
        def traffic_since(
            self, deployment_id: int, since: int, until: int, kind: str = "live"
        ) -> dict[int, Any]: ...
        def get(self, p: Principal, name: str, *, project: str = ...) -> Deployment: ...

    # -- use cases ---------------------------------------------------------------------------

    def start_canary(
        self,
        p: Principal,
        name: str,
        model_ref: str,
        *,
        steps: Sequence[float] = (10, 25, 50, 100),
        interval: str | float = "60s",
        thresholds: dict[str, Any] | None = None,
        failure_limit: int = 2,
        promote: bool = True,
        project: str = projects.DEFAULT_PROJECT,
    ) -> Deployment:
        """Start a canary of ``model_ref`` against the deployment's stable version.

        Args:
            steps: The canary's percent of live traffic at each step.
            interval: How long each step runs before its analysis (``60s``, ``2m``).
            thresholds: :class:`~mlplane.serving.analysis.CanaryThresholds` fields, e.g.
                ``{"max_error_rate": 0.01, "max_p99_ms": 50, "max_prediction_shift": 0.1}``.
            failure_limit: Failed checks that roll the canary back.
            promote: After the last step, move the alias the deployment follows to the
                canary (through the registry's approval rules).
        """
        steps_ = check_steps(steps)
        interval_s = parse_interval(interval)
        if failure_limit < 1:
            raise InvalidInput("failure_limit must be at least 1")
        limits = _thresholds(dict(thresholds or {}))
        with self._guard.unit(write=False) as s:
            _, row = self._row(s, p, name, project, Permission.READ, "deployment.read")
            model, followed = row.model_name, row.model_ref
        version, _ = self._version(p, model, model_ref, project)
        _, selector = _parse(followed)
        alias = selector if promote and not selector.isdigit() and selector != "latest" else None
        with self._guard.unit(write=True) as s:
            proj, row = self._row(s, p, name, project, Permission.WRITE, "deployment.canary")
            self._no_rollout(s, row, "start another canary")
            current = Routing.from_dict(json.loads(row.routing))
            if current.mode == "ab":
                raise Conflict(
                    f"deployment {name!r} runs an A/B experiment; end it first "
                    f"(`mlplane deploy route {name} MODEL@VERSION`)"
                )
            stable = current.stable
            if version == stable:
                raise InvalidInput(f"{model_ref} is version {version}, already the stable version")
            now = now_ms()
            rollout = RolloutRow(
                deployment_id=row.id,
                status="running",
                stable_version=stable,
                canary_version=version,
                canary_ref=model_ref,
                promote_alias=alias,
                steps=json.dumps(steps_),
                step_index=0,
                interval_s=interval_s,
                thresholds=json.dumps(limits),
                failure_limit=failure_limit,
                failures=0,
                checks="[]",
                step_started_at=now,
                next_check_at=now + int(interval_s * 1000),
                started_at=now,
                started_by=p.name,
                started_as=json.dumps(
                    {
                        "name": p.name,
                        "admin": p.is_platform_admin,
                        "roles": p.roles,
                        "source": p.source,
                        "scoped": p.scoped,
                    }
                ),
                reason="",
            )
            s.add(rollout)
            s.flush()
            routing = Routing(
                _split(stable, version, steps_[0]),
                current.shadow_unless([version]),
                current.sticky_header,
                "canary",
            )
            self._change(
                s,
                p,
                proj,
                row,
                "canary.start",
                routing,
                {
                    "rollout": rollout.id,
                    "canary": model_ref,
                    "version": version,
                    "steps": steps_,
                    "interval_s": interval_s,
                    "thresholds": limits,
                    "failure_limit": failure_limit,
                    "promote_alias": alias,
                },
            )
            s.flush()
            return self._entity(s, row, project)

    def promote(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> Deployment:
        """Promote a running (or blocked) canary now, as ``p``: needs the approver role on a
        protected alias, like any promotion."""
        with self._guard.unit(write=False) as s:
            _, row = self._row(s, p, name, project, Permission.WRITE, "deployment.promote")
            rollout = s.scalar(
                select(RolloutRow)
                .where(
                    RolloutRow.deployment_id == row.id,
                    RolloutRow.status.in_(("running", "blocked")),
                )
                .order_by(RolloutRow.id.desc())
            )
            if rollout is None:
                raise Conflict(f"deployment {name!r} has no canary to promote")
            rollout_id = rollout.id
        self._promote(p, rollout_id, project, manual=True)
        return self.get(p, name, project=project)

    def advance_rollouts(self, p: Principal, *, now: int | None = None) -> list[dict[str, Any]]:
        """Make every check that is due; returns what was decided (for logs and tests)."""
        self._guard.require_platform_admin(p, action="deployment.rollouts", resource="deployment/*")
        now = now or now_ms()
        with self._guard.unit(write=False) as s:
            due = list(
                s.execute(
                    select(RolloutRow.id, ProjectRow.name)
                    .join(DeploymentRow, DeploymentRow.id == RolloutRow.deployment_id)
                    .join(ProjectRow, ProjectRow.id == DeploymentRow.project_id)
                    .where(RolloutRow.status == "running", RolloutRow.next_check_at <= now)
                )
            )
        out: list[dict[str, Any]] = []
        for rollout_id, project in due:
            try:
                decided = self._check(p, rollout_id, project, now)
            except MlplaneError as exc:  # one broken rollout must not stop the others
                log.warning("rollout %s: %s", rollout_id, exc)
                continue
            if decided is not None:
                out.append(decided)
        return out

    # -- the controller ----------------------------------------------------------------------

    def _check(
        self, p: Principal, rollout_id: int, project: str, now: int
    ) -> dict[str, Any] | None:
        from mlplane.serving.analysis import CanaryThresholds, judge
        from mlplane.serving.stats import WindowStats

        promote = False
        with self._guard.unit(write=True) as s:
            r = s.scalar(select(RolloutRow).where(RolloutRow.id == rollout_id).with_for_update())
            if r is None or r.status != "running" or r.next_check_at > now:
                return None  # another controller made this check
            row = s.get(DeploymentRow, r.deployment_id)
            proj = s.get(ProjectRow, row.project_id)
            windows = self.traffic_since(row.id, r.step_started_at, now)
            stable = windows.get(r.stable_version) or WindowStats()
            canary = windows.get(r.canary_version) or WindowStats()
            check = judge(stable, canary, CanaryThresholds(**json.loads(r.thresholds)))
            steps = json.loads(r.steps)
            record = {
                "time": now,
                "step": r.step_index,
                "percent": steps[r.step_index],
                **check.to_dict(),
            }
            r.checks = json.dumps([*json.loads(r.checks), record])
            current = Routing.from_dict(json.loads(row.routing))
            decided: dict[str, Any] = {
                "rollout": r.id,
                "deployment": row.name,
                "verdict": check.verdict,
                "step": r.step_index,
            }
            if check.verdict == "fail":
                r.failures += 1
                if r.failures >= r.failure_limit:
                    reason = f"{r.failures} failed checks: " + "; ".join(check.breaches)
                    self._end_rollout(s, r, "rolled_back", reason, now)
                    routing = Routing.single(r.stable_version, current.shadow)
                    self._change(
                        s,
                        p,
                        proj,
                        row,
                        "canary.rollback",
                        routing,
                        {"rollout": r.id, "reason": reason, "check": record},
                    )
                    logging.getLogger(ALERT).error(
                        "deployment %s: canary %s rolled back: %s", row.name, r.canary_ref, reason
                    )
                    decided["outcome"] = "rolled_back"
                    return decided
                self._restart_step(r, now)
                self._guard.audit(
                    s,
                    p,
                    "deployment.canary.check",
                    f"deployment/{row.name}",
                    proj.id,
                    outcome="failed",
                    details=record,
                )
                decided["outcome"] = "failed_check"
                return decided
            if check.verdict == "inconclusive":
                r.next_check_at = now + int(r.interval_s * 1000)
                self._guard.audit(
                    s,
                    p,
                    "deployment.canary.check",
                    f"deployment/{row.name}",
                    proj.id,
                    outcome="inconclusive",
                    details=record,
                )
                decided["outcome"] = "waiting"
                return decided
            if r.step_index + 1 < len(steps):
                r.step_index += 1
                self._restart_step(r, now)
                routing = Routing(
                    _split(r.stable_version, r.canary_version, steps[r.step_index]),
                    current.shadow,
                    current.sticky_header,
                    "canary",
                )
                self._change(
                    s,
                    p,
                    proj,
                    row,
                    "canary.step",
                    routing,
                    {"rollout": r.id, "step": r.step_index, "check": record},
                )
                decided["outcome"] = f"step {r.step_index}"
                return decided
            promote = True
            self._guard.audit(
                s, p, "deployment.canary.check", f"deployment/{row.name}", proj.id, details=record
            )
        if promote:
            decided["outcome"] = self._promote(p, rollout_id, project, manual=False)
        return decided

    @staticmethod
    def _restart_step(r: RolloutRow, now: int) -> None:
        r.step_started_at = now
        r.next_check_at = now + int(r.interval_s * 1000)

    def _promote(self, p: Principal, rollout_id: int, project: str, *, manual: bool) -> str:
        with self._guard.unit(write=False) as s:
            r = s.get(RolloutRow, rollout_id)
            row = s.get(DeploymentRow, r.deployment_id)
            alias, version, model = r.promote_alias, r.canary_version, row.model_name
            starter = json.loads(r.started_as or "{}")
        refused = None
        if alias is not None:
            actor = p if manual else self._on_behalf(starter)
            try:
                if actor is None:
                    raise Conflict(f"{starter.get('name')} may no longer promote")
                self._registry.set_alias(actor, model, alias, version, project=project)
            except MlplaneError as exc:
                refused = str(exc)
        with self._guard.unit(write=True) as s:
            r = s.scalar(select(RolloutRow).where(RolloutRow.id == rollout_id).with_for_update())
            if r.status not in ("running", "blocked"):
                return r.status
            row = s.get(DeploymentRow, r.deployment_id)
            proj = s.get(ProjectRow, row.project_id)
            current = Routing.from_dict(json.loads(row.routing))
            if refused is not None:
                self._end_rollout(s, r, "blocked", f"promotion refused: {refused}")
                routing = Routing.single(r.stable_version, current.shadow)
                self._change(
                    s, p, proj, row, "canary.blocked", routing, {"rollout": r.id, "reason": refused}
                )
                logging.getLogger(ALERT).error(
                    "deployment %s: canary %s passed but its promotion was refused: %s",
                    row.name,
                    r.canary_ref,
                    refused,
                )
                status = "blocked"
            else:
                self._end_rollout(s, r, "promoted", "manual" if manual else "every step passed")
                routing = Routing.single(version, current.shadow)
                self._change(
                    s,
                    p,
                    proj,
                    row,
                    "canary.promote",
                    routing,
                    {"rollout": r.id, "version": version, "alias": alias},
                )
                status = "promoted"
        if refused is not None and manual:
            raise Conflict(f"the promotion of {model}@{version} was refused: {refused}")
        return status

    def _on_behalf(self, starter: dict[str, Any]) -> Principal | None:
        """The rollout's starter as they are now, capped by what they held at the start."""
        snapshot = Principal(
            name=str(starter.get("name", "")),
            is_platform_admin=bool(starter.get("admin")),
            roles=dict(starter.get("roles") or {}),
            source=str(starter.get("source", "local")),
            scoped=bool(starter.get("scoped")),
        )
        if self._principal_now is None:
            return snapshot
        return self._principal_now(snapshot)  # type: ignore[no-any-return]

    @staticmethod
    def _end_rollout(
        s: Session, r: RolloutRow, status: str, reason: str, now: int | None = None
    ) -> None:
        r.status = status
        r.reason = reason[:2000]
        r.ended_at = now or now_ms()

    @staticmethod
    def _rollout_entity(r: RolloutRow) -> Rollout:
        return Rollout(
            rollout_id=r.id,
            status=r.status,
            stable_version=r.stable_version,
            canary_version=r.canary_version,
            canary_ref=r.canary_ref,
            promote_alias=r.promote_alias,
            steps=json.loads(r.steps),
            step_index=r.step_index,
            interval_s=r.interval_s,
            thresholds=json.loads(r.thresholds),
            failure_limit=r.failure_limit,
            failures=r.failures,
            checks=json.loads(r.checks),
            started_at=r.started_at,
            started_by=r.started_by,
            step_started_at=r.step_started_at,
            next_check_at=r.next_check_at,
            ended_at=r.ended_at,
            reason=r.reason,
        )


def _parse(ref: str) -> tuple[str, str]:
    from mlplane.registry import uri

    return uri.parse(ref)
