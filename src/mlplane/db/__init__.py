"""Platform layer: the metadata database (SQLAlchemy + Alembic)."""

from mlplane.db.engine import Database, now_ms
from mlplane.db.migrate import HEAD_REVISION, ensure_schema, upgrade

__all__ = ["HEAD_REVISION", "Database", "ensure_schema", "now_ms", "upgrade"]
