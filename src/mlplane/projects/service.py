"""Projects: the unit of ownership every other object belongs to."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplane.db.engine import now_ms
from mlplane.projects.entities import Project
from mlplane.projects.tables import ProjectRow


def get_or_create(session: Session, name: str) -> ProjectRow:
    """The project row named ``name``, created on first use."""
    row = session.scalar(select(ProjectRow).where(ProjectRow.name == name))
    if row is None:
        row = ProjectRow(name=name, description="", created_at=now_ms())
        session.add(row)
        session.flush()
    return row


def find(session: Session, name: str) -> ProjectRow | None:
    return session.scalar(select(ProjectRow).where(ProjectRow.name == name))


def to_entity(row: ProjectRow) -> Project:
    return Project(
        project_id=row.id, name=row.name, description=row.description, created_at=row.created_at
    )
