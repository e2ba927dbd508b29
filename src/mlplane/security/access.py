"""The one place where permissions are checked and audit events are written.

Services call :meth:`Guard.require` before they read or change state and
:meth:`Guard.audit` in the same transaction as the change, so the SDK in
embedded mode, the CLI and every HTTP route are held to the same rules. Events
are hash-chained (:mod:`mlplane.security.audit`) when that transaction commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session

from mlplane.db.engine import Database, now_ms
from mlplane.errors import PermissionDenied
from mlplane.security.audit import CHECKPOINT_EVERY, append_events
from mlplane.security.keys import KeyRing
from mlplane.security.principal import Principal

_PENDING = "mlplane.audit.pending"
_SECRET_WORDS = ("secret", "password", "passwd", "private", "credential", "api_key")


class Permission(StrEnum):
    READ = "read"
    WRITE = "write"
    APPROVE = "approve"
    ADMIN = "admin"
    PREDICT = "predict"
    """Call a deployment's inference routes and send it feedback."""


ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "predictor": frozenset({Permission.PREDICT}),
    "viewer": frozenset({Permission.READ}),
    "contributor": frozenset({Permission.READ, Permission.WRITE, Permission.PREDICT}),
    "approver": frozenset(
        {Permission.READ, Permission.WRITE, Permission.APPROVE, Permission.PREDICT}
    ),
    "admin": frozenset(Permission),
}
"""Permissions of each project role, declared as data. ``predictor`` only calls
deployments (an application's service account); it reads nothing."""


def allowed(principal: Principal, permission: Permission, project: str) -> bool:
    """Whether ``principal`` holds ``permission`` in ``project``."""
    if principal.is_platform_admin:
        return True
    role = principal.roles.get(project) or principal.roles.get("*")
    return role is not None and permission in ROLE_PERMISSIONS.get(role, frozenset())


def may_predict(principal: Principal, project: str, deployment: str) -> bool:
    """Whether ``principal`` may call ``deployment`` of ``project`` (and send it feedback)."""
    if principal.deployments is not None and deployment not in principal.deployments:
        return False
    return allowed(principal, Permission.PREDICT, project)


class Guard:
    """Permission checks and audit records, made inside the service's transaction.

    A denial cannot be recorded in the transaction it aborts, so
    :meth:`require` raises with the event attached and :meth:`unit` writes it
    in a transaction of its own once the failed one has rolled back.
    """

    def __init__(
        self,
        db: Database,
        keys: Callable[[], KeyRing] | None = None,
        *,
        checkpoint_every: int = CHECKPOINT_EVERY,
    ) -> None:
        self._db = db
        self._keys = keys
        self.checkpoint_every = checkpoint_every
        """Sign the chain head every this many events (0: only on request); needs ``keys``."""

    @contextmanager
    def unit(self, *, write: bool) -> Iterator[Session]:
        """A read or write unit of work that records denials on the way out."""
        try:
            with self._db.write() if write else self._db.read() as session:
                yield session
        except PermissionDenied as exc:
            event = exc.details.get("audit")
            if isinstance(event, dict):
                with self._db.write() as side:
                    self._append(side, [event])
            raise

    def require(
        self,
        principal: Principal,
        permission: Permission,
        *,
        project: str,
        project_id: int | None,
        action: str,
        resource: str,
    ) -> None:
        """Raise :class:`PermissionDenied` unless ``principal`` may do ``action``."""
        if allowed(principal, permission, project):
            return
        event = _event(principal, action, resource, project_id, "denied", None)
        raise PermissionDenied(
            f"{principal.name} needs the {permission.value!r} permission on project "
            f"{project!r} to {action}",
            audit=event,
        )

    def require_platform_admin(self, principal: Principal, *, action: str, resource: str) -> None:
        """Raise :class:`PermissionDenied` unless ``principal`` is a platform admin."""
        if principal.is_platform_admin:
            return
        event = _event(principal, action, resource, None, "denied", None)
        raise PermissionDenied(
            f"{principal.name} must be a platform admin to {action}", audit=event
        )

    def audit(
        self,
        session: Session,
        principal: Principal,
        action: str,
        resource: str,
        project_id: int | None,
        *,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an audit event in the caller's transaction.

        The event is chained just before the transaction commits: the chain head is
        then the last lock the transaction takes, and holds it only across the commit,
        so writers never wait on each other in opposite orders.
        """
        pending = session.info.get(_PENDING)
        if pending is None:
            pending = session.info[_PENDING] = []
            sa_event.listen(session, "before_commit", self._chain_pending, once=True)
        pending.append(_event(principal, action, resource, project_id, outcome, details))

    def record(
        self,
        principal: Principal,
        action: str,
        resource: str,
        project_id: int | None,
        *,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an audit event in a transaction of its own: for what happens outside the
        database (a key file changed, a refusal decided after its transaction was left)."""
        with self.unit(write=True) as session:
            self.audit(
                session, principal, action, resource, project_id, outcome=outcome, details=details
            )

    def _chain_pending(self, session: Session) -> None:
        events = session.info.pop(_PENDING, [])
        if events:
            session.flush()  # the change's own locks first, the chain head's last
            self._append(session, events)

    def _append(self, session: Session, events: list[dict[str, Any]]) -> None:
        append_events(session, events, keys=self._keys, checkpoint_every=self.checkpoint_every)


def _event(
    principal: Principal,
    action: str,
    resource: str,
    project_id: int | None,
    outcome: str,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "time": now_ms(),
        "actor": principal.name,
        "action": action,
        "resource": resource,
        "project_id": project_id,
        "source": principal.source,
        "outcome": outcome,
        "details": json.dumps(_redacted(details or {}), sort_keys=True, default=str),
    }


def _redacted(details: dict[str, Any]) -> dict[str, Any]:
    """The log is read by every platform admin and exported: no secret may reach it, even
    if a caller passes one by mistake."""
    out: dict[str, Any] = {}
    for key, value in details.items():
        lowered = str(key).lower()
        if lowered == "token" or any(word in lowered for word in _SECRET_WORDS):
            out[key] = "[redacted]"
        elif isinstance(value, dict):
            out[key] = _redacted(value)
        else:
            out[key] = value
    return out
