"""Platform layer: the metadata database (SQLAlchemy + Alembic)."""

from __future__ import annotations

from typing import Any

from mlplane.db.engine import Database, now_ms

__all__ = ["HEAD_REVISION", "Database", "ensure_schema", "now_ms", "upgrade"]


def __getattr__(name: str) -> Any:
    # Alembic is only needed when a schema is checked or changed: import it then.
    if name in ("HEAD_REVISION", "ensure_schema", "upgrade"):
        from mlplane.db import migrate

        return getattr(migrate, name)
    raise AttributeError(name)
