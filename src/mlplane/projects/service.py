"""Projects: the unit of ownership every other object belongs to."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplane.db.engine import now_ms
from mlplane.projects.entities import Project
from mlplane.projects.tables import ProjectRow

if TYPE_CHECKING:
    from mlplane.security import Guard, Permission, Principal


def get_or_create(session: Session, name: str) -> ProjectRow:
    """The project row named ``name``, created on first use."""
    row = session.scalar(select(ProjectRow).where(ProjectRow.name == name))
    if row is None:
        row = ProjectRow(name=name, description="", created_at=now_ms())
        session.add(row)
        session.flush()
    return row


def guarded(
    session: Session,
    guard: Guard,
    p: Principal,
    project: str,
    perm: Permission,
    *,
    action: str,
    resource: str,
    create: bool,
    holds: str,
) -> ProjectRow:
    """The project row once ``p`` may ``action`` in it: made on first use when ``create``
    (a write), else a project that never held anything is NotFound ("has no ``holds``").
    The permission is checked (and a denial audited) before that answer, so a caller
    without the role learns nothing about which projects exist."""
    from mlplane.errors import NotFound

    row = get_or_create(session, project) if create else find(session, project)
    guard.require(
        p,
        perm,
        project=project,
        project_id=row.id if row else None,
        action=action,
        resource=resource,
    )
    if row is None:
        raise NotFound(f"project {project!r} has no {holds}")
    return row


def find(session: Session, name: str) -> ProjectRow | None:
    return session.scalar(select(ProjectRow).where(ProjectRow.name == name))


def to_entity(row: ProjectRow) -> Project:
    return Project(
        project_id=row.id, name=row.name, description=row.description, created_at=row.created_at
    )


def readable(session: Session, p: Principal) -> list[str]:
    """The names of the projects ``p`` may read, sorted (a role on ``*`` reads them all)."""
    return list(readable_ids(session, p).values())


def readable_ids(session: Session, p: Principal) -> dict[int, str]:
    """The id and name of each project ``p`` may read, by name."""
    from mlplane.security import Permission, allowed

    rows = session.execute(select(ProjectRow.id, ProjectRow.name).order_by(ProjectRow.name))
    return {i: n for i, n in rows if allowed(p, Permission.READ, n)}
