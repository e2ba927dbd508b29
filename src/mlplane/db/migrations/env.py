"""Alembic environment: runs on the connection that mlplane hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from mlplane.db.base import load_all_tables

target_metadata = load_all_tables()
config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as conn:
        _run(conn)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # One transaction for the whole upgrade, SQLite included (our connections emit
        # BEGIN themselves, so SQLite's DDL is transactional): another process sees the
        # old schema or the new one, never a revision in between.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
