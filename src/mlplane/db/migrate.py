"""Schema management: Alembic revisions shipped in the package, checked at start-up.

A new, empty database is created at the newest schema. A database at an older
revision is refused with a message that says to run ``mlplane db upgrade``
(or upgraded when ``auto_upgrade`` is set), so two versions of mlplane never
write one database with different ideas of its shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from mlplane.db.engine import Database
from mlplane.errors import SchemaOutdated

if TYPE_CHECKING:  # Alembic loads only to migrate: checking the revision is one query
    from alembic.config import Config

HEAD_REVISION = "0015_tree_cache"
"""The newest revision; a test pins it to the head of the shipped scripts."""

_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x6D6C706C  # "mlpl": the advisory lock that serialises migrations


def alembic_config(db: Database) -> Config:
    cfg = _script_config()
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return cfg


def script_head() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_script_config()).get_current_head()
    assert head is not None
    return head


def _script_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def current_revision(db: Database) -> str | None:
    """The revision stamped in the database, or None for an empty one."""
    with db.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        return row[0] if row else None


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (``mlplane db upgrade``)."""
    from alembic import command

    cfg = alembic_config(db)
    with db._write_engine.connect() as conn:
        if db.dialect == "postgresql":
            # Server workers start together: one migrates, the others wait here and then
            # find the schema current. (SQLite writers already serialise on BEGIN IMMEDIATE.)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        if conn.in_transaction():
            conn.commit()


def ensure_schema(db: Database, *, auto_upgrade: bool = False) -> None:
    """Create a new database, or check that an existing one is current."""
    rev = current_revision(db)
    if rev == HEAD_REVISION:
        return
    if rev is None:
        with db.engine.connect() as conn:
            has_tables = bool(inspect(conn).get_table_names())
        if has_tables:
            raise SchemaOutdated(
                f"the database at {db.engine.url.render_as_string(hide_password=True)} has tables "
                "but no mlplane schema version; point MLPLANE_DB_URL at an empty database"
            )
        upgrade(db)
        return
    if auto_upgrade:
        upgrade(db)
        return
    raise SchemaOutdated(
        f"the database schema is at revision {rev}, this mlplane needs {HEAD_REVISION}: "
        "run `mlplane db upgrade` (back up the database first)"
    )
