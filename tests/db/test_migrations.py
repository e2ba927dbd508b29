"""Schema management: upgrade from the first schema, refusal of outdated databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from mlplane.client import Client
from mlplane.config import load_settings
from mlplane.db import HEAD_REVISION, Database, ensure_schema, upgrade
from mlplane.db.base import load_all_tables
from mlplane.db.migrate import current_revision, script_head
from mlplane.errors import SchemaOutdated


def test_head_constant_matches_the_shipped_scripts() -> None:
    assert script_head() == HEAD_REVISION


def _first_schema_db(url: str) -> Database:
    db = Database(url)
    upgrade(db, "0001_initial")
    with db.write() as s:
        s.execute(
            text(
                "INSERT INTO projects (id, name, description, created_at) "
                "VALUES (1, 'default', '', 1)"
            )
        )
        s.execute(
            text(
                "INSERT INTO experiments (id, project_id, name, description, artifact_location, "
                "lifecycle_stage, creation_time, last_update_time) "
                "VALUES (1, 1, 'old', '', 'mlplane-artifacts:/1', 'active', 1, 1)"
            )
        )
        s.execute(
            text(
                "INSERT INTO runs (seq, id, experiment_id, name, status, start_time, "
                "lifecycle_stage, user_id, artifact_uri) VALUES (7, '"
                + "a" * 32
                + "', 1, 'r', 'FINISHED', 5, 'active', 'me', '')"
            )
        )
        s.execute(
            text("INSERT INTO params (run_id, key, value) VALUES ('" + "a" * 32 + "', 'lr', '0.1')")
        )
        s.execute(text("INSERT INTO metric_keys (id, key) VALUES (3, 'acc')"))
        s.execute(
            text(
                "INSERT INTO metrics (run_seq, key_id, step, timestamp, value) "
                "VALUES (7, 3, 0, 5, 0.9)"
            )
        )
        s.execute(
            text(
                "INSERT INTO latest_metrics (run_id, key, step, timestamp, value) VALUES ('"
                + "a" * 32
                + "', 'acc', 0, 5, 0.9)"
            )
        )
    return db


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrade_from_the_first_schema_keeps_data(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        from tests.conftest import create_pg_database, postgres_available

        if not postgres_available():
            pytest.skip("PostgreSQL is not reachable")
        url = create_pg_database()
        request.addfinalizer(lambda: __import__("tests.conftest").conftest.drop_pg_database(url))
    db = _first_schema_db(url)
    assert current_revision(db) == "0001_initial"

    with pytest.raises(SchemaOutdated, match="mlplane db upgrade"):
        ensure_schema(db)

    upgrade(db)
    assert current_revision(db) == HEAD_REVISION
    ensure_schema(db)  # now current: no error
    db.dispose()

    client = Client(settings=load_settings(home=tmp_path, db_url=url))
    run = client.get_run("a" * 32)
    assert run.data.params == {"lr": "0.1"} and run.data.metrics == {"acc": 0.9}
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "acc")] == [
        (0, 0.9)
    ]
    client.log_metric(run.info.run_id, "acc", 0.95, step=1)  # the old key id is reused
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.95}
    assert run.inputs == []
    client.log_inputs(run.info.run_id, [])  # the new table works
    client.close()


def test_migrated_schema_equals_the_models(tmp_path: Path) -> None:
    """The migrations and the table classes describe the same tables and columns."""
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(db)
    insp = inspect(db.engine)
    meta = load_all_tables()
    for table in meta.sorted_tables:
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name
        idx = {i["name"] for i in insp.get_indexes(table.name)}
        assert {i.name for i in table.indexes} <= idx, table.name


def test_auto_upgrade_setting(tmp_path: Path) -> None:
    db = _first_schema_db(f"sqlite:///{tmp_path / 'a.db'}")
    ensure_schema(db, auto_upgrade=True)
    assert current_revision(db) == HEAD_REVISION


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'f.db'}")
    with db.write() as s:
        s.execute(text("CREATE TABLE other (x INTEGER)"))
    with pytest.raises(SchemaOutdated, match="empty database"):
        ensure_schema(db)


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    with db.read() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def _start_worker(url: str) -> None:
    db = Database(url)
    try:
        ensure_schema(db)
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_first_starts_migrate_once(backend: str, tmp_path: Path) -> None:
    """Server worker processes start together on an empty database: all come up."""
    import multiprocessing

    from tests.conftest import create_pg_database, drop_pg_database, postgres_available

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
    else:
        if not postgres_available():
            pytest.skip("PostgreSQL is not reachable")
        url = create_pg_database()
    try:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_start_worker, args=(url,)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
        db = Database(url)
        assert current_revision(db) == HEAD_REVISION
        db.dispose()
    finally:
        if backend == "postgres":
            drop_pg_database(url)
