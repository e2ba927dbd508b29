"""The hash-chained audit log on SQLite and PostgreSQL: a real session verifies, and each
kind of tampering done straight to the database is caught at the right sequence."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sklearn.linear_model import LogisticRegression
from sqlalchemy import Connection, text

from mlplane.config import load_settings
from mlplane.db import Database, upgrade
from mlplane.errors import InvalidInput, PermissionDenied
from mlplane.security import Principal, local_admin
from mlplane.security.audit import GENESIS, _checkpoint_message, event_hash
from mlplane.services import Services

ME = local_admin("tester")
EVE = Principal("eve", roles={"default": "viewer"})
_COLUMNS = "seq, time, actor, action, resource, project_id, source, outcome, details, prev_hash"


def _backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    if request.param == "sqlite":
        return None
    from tests.conftest import create_pg_database, drop_pg_database, postgres_available

    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable")
    url = create_pg_database()
    request.addfinalizer(lambda: drop_pg_database(url))
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    url = _backend_url(request, tmp_path)
    s = Services.from_settings(load_settings(home=tmp_path / "home", db_url=url))
    s.guard.checkpoint_every = 3
    yield s
    s.close()


def _session(svc: Services, tmp_path: Path) -> None:
    """Ten events: 1 experiment, 3 runs, a dataset, a model, a denial, 3 more runs."""
    exp = svc.tracking.create_experiment(ME, "audit-demo")
    for i in range(3):
        svc.tracking.create_run(ME, exp, run_name=f"r{i}")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.csv").write_text("x,y\n1,2\n3,4\n")
    svc.data.add(ME, "tiny", folder)
    svc.registry.register(ME, "clf", LogisticRegression().fit([[0.0], [1.0]], [0, 1]))
    with pytest.raises(PermissionDenied):
        svc.tracking.create_run(EVE, exp)
    for i in range(3):
        svc.tracking.create_run(ME, exp, run_name=f"late{i}")


def _sql(svc: Services, statement: str, **params: object) -> None:
    with svc.db.engine.begin() as conn:
        conn.execute(text(statement), params)


def _rechain_from(conn: Connection, start: int) -> None:
    """What an attacker without the key can do: recompute every hash from ``start`` on."""
    prev = conn.execute(text("SELECT hash FROM audit_events WHERE seq = :s"), {"s": start - 1})
    prev_hash = prev.scalar() or GENESIS
    rows = conn.execute(
        text(f"SELECT {_COLUMNS} FROM audit_events WHERE seq >= :s ORDER BY seq"), {"s": start}
    ).all()
    for row in rows:
        new = event_hash({**row._mapping, "prev_hash": prev_hash})
        conn.execute(
            text("UPDATE audit_events SET prev_hash = :p, hash = :h WHERE seq = :s"),
            {"p": prev_hash, "h": new, "s": row.seq},
        )
        prev_hash = new
    conn.execute(
        text("UPDATE audit_chain_head SET seq = :s, hash = :h"), {"s": rows[-1].seq, "h": prev_hash}
    )


def _forge_insert(svc: Services, *, rewrite_checkpoints: bool) -> None:
    with svc.db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 5"))
        conn.execute(text("UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000"))
        conn.execute(
            text(
                f"INSERT INTO audit_events ({_COLUMNS}, hash) VALUES (5, 1, 'tester', "
                "'model.promote', 'model/clf/1', 1, 'local', 'ok', '{}', '', '')"
            )
        )
        _rechain_from(conn, 5)
        if rewrite_checkpoints:
            conn.execute(
                text(
                    "UPDATE audit_checkpoints SET hash = "
                    "(SELECT hash FROM audit_events e WHERE e.seq = audit_checkpoints.seq)"
                )
            )


def _delete_and_close_the_gap(svc: Services) -> None:
    """Delete event 4, renumber the later ones and recompute their own hashes."""
    with svc.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = 4"))
        rows = conn.execute(
            text(f"SELECT {_COLUMNS} FROM audit_events WHERE seq > 4 ORDER BY seq")
        ).all()
        for row in rows:
            h = event_hash({**row._mapping, "seq": row.seq - 1})
            conn.execute(
                text("UPDATE audit_events SET seq = :n, hash = :h WHERE seq = :s"),
                {"n": row.seq - 1, "h": h, "s": row.seq},
            )


def _swap_key(svc: Services) -> None:
    """Replace the public key and re-sign every checkpoint with the attacker's own key."""
    mine = Ed25519PrivateKey.generate()
    public = mine.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with svc.db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_keys SET public_key = :p"), {"p": public})
        for cp in conn.execute(text("SELECT seq, hash, time, key_id FROM audit_checkpoints")).all():
            sig = mine.sign(_checkpoint_message(cp.seq, cp.hash, cp.time, cp.key_id))
            conn.execute(
                text("UPDATE audit_checkpoints SET signature = :g WHERE seq = :s"),
                {"g": sig, "s": cp.seq},
            )


TAMPERING: dict[str, tuple[Callable[[Services], None], int, str]] = {
    "edited detail": (
        lambda s: _sql(s, 'UPDATE audit_events SET details = \'{"name": "x"}\' WHERE seq = 2'),
        2,
        "event 2 was altered",
    ),
    "deleted middle event": (
        lambda s: _sql(s, "DELETE FROM audit_events WHERE seq = 4"),
        4,
        "event 4 is missing",
    ),
    "swapped sequences": (
        lambda s: (
            _sql(s, "UPDATE audit_events SET seq = -1 WHERE seq = 4"),
            _sql(s, "UPDATE audit_events SET seq = 4 WHERE seq = 5"),
            _sql(s, "UPDATE audit_events SET seq = 5 WHERE seq = -1"),
        ),
        4,
        "event 4 was altered",
    ),
    "deleted event, gap closed and re-hashed": (
        _delete_and_close_the_gap,
        4,
        "event 4 does not follow event 3",
    ),
    "forged insert, rechained": (
        lambda s: _forge_insert(s, rewrite_checkpoints=False),
        6,
        "does not match its signed checkpoint: events between 4 and 6",
    ),
    "forged insert, checkpoints rewritten": (
        lambda s: _forge_insert(s, rewrite_checkpoints=True),
        6,
        "checkpoint 6 has an invalid signature",
    ),
    "tail deleted past a checkpoint, head rewound": (
        lambda s: (
            _sql(s, "DELETE FROM audit_events WHERE seq > 7"),
            _sql(
                s,
                "UPDATE audit_chain_head SET seq = 7, "
                "hash = (SELECT hash FROM audit_events WHERE seq = 7)",
            ),
        ),
        8,
        "events after 7 were deleted: checkpoint 9",
    ),
    "tail deleted after the last checkpoint": (
        lambda s: _sql(s, "DELETE FROM audit_events WHERE seq = 10"),
        10,
        "the chain ends at 9 but its head records 10",
    ),
    "edited checkpoint signature": (
        lambda s: _sql(
            s, "UPDATE audit_checkpoints SET signature = :g WHERE seq = 6", g=b"\x00" * 64
        ),
        6,
        "checkpoint 6 has an invalid signature",
    ),
    "substituted public key": (_swap_key, 3, "the stored public key is not the wrapped key's"),
}


def test_a_real_session_verifies_with_checkpoints(svc: Services, tmp_path: Path) -> None:
    _session(svc, tmp_path)
    report = svc.audit.verify(ME)
    assert report.ok, report.problem
    assert (report.events, report.checkpoints, report.last_seq) == (10, 3, 10)
    events = svc.audit.events(ME, limit=100)
    assert [e.seq for e in events] == list(range(1, 11))
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert events[6].actor == "eve" and events[6].outcome == "denied"
    assert {"experiment.create", "dataset.version.create", "model.version.create"} <= {
        e.action for e in events
    }
    assert [e.seq for e in svc.audit.events(ME, actor="eve")] == [7]
    assert len(svc.audit.events(ME, action="run.create", limit=2)) == 2
    assert list(svc.audit.export(ME)) == events
    recent = list(svc.audit.export(ME, since_ms=events[8].time))
    assert {9, 10} <= {e.seq for e in recent} and all(e.time >= events[8].time for e in recent)

    made = svc.audit.checkpoint(ME)  # on request: signs the head, then records that it did
    assert (made.seq, made.hash) == (10, events[-1].hash)
    assert svc.audit.verify(ME).ok and svc.audit.events(ME, limit=1)[0].action == (
        "audit.checkpoint"
    )


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_tampering_is_caught_at_the_first_bad_sequence(
    kind: str, svc: Services, tmp_path: Path
) -> None:
    _session(svc, tmp_path)
    assert svc.audit.verify(ME).ok
    tamper, first_bad, message = TAMPERING[kind]
    tamper(svc)
    report = svc.audit.verify(ME)
    assert not report.ok
    assert report.first_bad_seq == first_bad, report.problem
    assert message in report.problem


def test_only_platform_admins_read_and_the_refusal_is_logged(svc: Services) -> None:
    svc.tracking.create_experiment(ME, "e")
    for call in (svc.audit.verify, svc.audit.events, svc.audit.export, svc.audit.checkpoint):
        with pytest.raises(PermissionDenied, match="platform admin"):
            call(EVE)
    denied = svc.audit.events(ME, actor="eve")
    assert [e.action for e in denied] == [
        "audit.verify",
        "audit.read",
        "audit.export",
        "audit.checkpoint",
    ]
    assert svc.audit.verify(ME).ok


def test_details_never_hold_secrets(svc: Services) -> None:
    details = {"password": "hunter2", "token": "mlp_x", "nested": {"client_secret": "s3"}}
    with svc.db.write() as s:
        svc.guard.audit(s, ME, "test.secret", "x", None, details={**details, "token_id": "t1"})
    (event,) = svc.audit.events(ME)
    assert event.details == {
        "password": "[redacted]",
        "token": "[redacted]",
        "nested": {"client_secret": "[redacted]"},
        "token_id": "t1",
    }
    assert svc.audit.verify(ME).ok


def test_an_empty_log_verifies_and_has_nothing_to_checkpoint(svc: Services) -> None:
    report = svc.audit.verify(ME)
    assert report.ok and (report.events, report.last_hash) == (0, GENESIS)
    with pytest.raises(InvalidInput, match="empty"):
        svc.audit.checkpoint(ME)


def test_concurrent_writers_make_one_gap_free_chain(svc: Services) -> None:
    exp = svc.tracking.create_experiment(ME, "busy")
    errors: list[BaseException] = []

    def work(tag: str) -> None:
        try:
            for i in range(25):
                svc.tracking.create_run(ME, exp, run_name=f"{tag}{i}")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = svc.audit.events(ME, limit=1000)
    assert [e.seq for e in events] == list(range(1, 52))
    assert [e.prev_hash for e in events] == [GENESIS] + [e.hash for e in events[:-1]]
    report = svc.audit.verify(ME)
    assert report.ok and report.checkpoints == 17


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_chains_existing_events(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    request.param = backend
    url = _backend_url(request, tmp_path) or f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    upgrade(db, "0011_identities")
    with db.write() as s:
        for seq in (3, 7, 8):  # old logs have holes: deleted rows, rolled-back sequences
            s.execute(
                text(
                    "INSERT INTO audit_events (seq, time, actor, action, resource, project_id, "
                    "source, outcome, details) VALUES "
                    f"({seq}, {seq}, 'old', 'run.create', 'run/{seq}', NULL, 'local', 'ok', "
                    "'{}')"
                )
            )
    upgrade(db)
    db.dispose()
    svc = Services.from_settings(load_settings(home=tmp_path / "home", db_url=url))
    try:
        events = svc.audit.events(ME)
        assert [(e.seq, e.resource) for e in events] == [(1, "run/3"), (2, "run/7"), (3, "run/8")]
        svc.tracking.create_experiment(ME, "after")  # new events extend the migrated chain
        report = svc.audit.verify(ME)
        assert report.ok and report.last_seq == 4, report.problem
    finally:
        svc.close()
