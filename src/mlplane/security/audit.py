"""The tamper-evident audit log: hash-chained events, signed checkpoints, verification.

Every event stores ``prev_hash`` (the hash of the event before it) and ``hash``,
the SHA-256 of the canonical JSON of all its fields, ``seq`` and ``prev_hash``
included. Appending locks the one-row chain head (``SELECT … FOR UPDATE``; SQLite
writers are serialised already), so sequence numbers are gap-free and the chain
stays linear with concurrent writers. Anyone with database access could still
rewrite the whole chain, so every :data:`CHECKPOINT_EVERY` events (and on
``mlplane audit checkpoint``) the head is signed with a platform Ed25519 key whose
private half is kept wrapped by the master key: a rewrite shows up as a
checkpoint that no longer matches, or a signature that does not verify.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlplane.db.engine import Database, now_ms
from mlplane.errors import InvalidInput, TamperedArtifact
from mlplane.security.keys import KeyRing
from mlplane.security.principal import Principal
from mlplane.security.tables import (
    AuditChainHeadRow,
    AuditCheckpointRow,
    AuditEventRow,
    AuditKeyRow,
)

if TYPE_CHECKING:  # access.py imports this module for the write path
    from mlplane.security.access import Guard

GENESIS = "0" * 64
"""``prev_hash`` of the first event."""
CHECKPOINT_EVERY = 1000
_HEAD_ID = 1
_PAGE = 1000
_HASHED = ("seq", "time", "actor", "action", "resource", "project_id", "source", "outcome")
_CHECKPOINT_DOMAIN = b"mlplane-audit-checkpoint/v1\n"


def event_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 of an event's canonical JSON (its ``details`` as the stored JSON text).

    This format is a contract with every stored chain: changing it breaks verification.
    """
    body = {k: fields[k] for k in (*_HASHED, "details", "prev_hash")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _checkpoint_message(seq: int, hash_: str, time: int, key_id: str) -> bytes:
    body = {"hash": hash_, "key_id": key_id, "seq": seq, "time": time}
    return _CHECKPOINT_DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


# -- the write path ------------------------------------------------------------------------------


def _lock_head(session: Session) -> AuditChainHeadRow:
    stmt = (
        select(AuditChainHeadRow)
        .where(AuditChainHeadRow.id == _HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    head = session.scalars(stmt).first()
    if head is None:  # only a schema made without the migrations (which seed it)
        head = AuditChainHeadRow(id=_HEAD_ID, seq=0, hash=GENESIS)
        session.add(head)
        session.flush()
    return head


def append_events(
    session: Session,
    events: list[dict[str, Any]],
    *,
    keys: Callable[[], KeyRing] | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> None:
    """Chain ``events`` onto the log in ``session``'s transaction (see the module doc)."""
    head = _lock_head(session)
    for event in events:
        fields = {**event, "seq": head.seq + 1, "prev_hash": head.hash}
        fields["hash"] = event_hash(fields)
        session.add(AuditEventRow(**fields))
        head.seq, head.hash = fields["seq"], fields["hash"]
        if keys is not None and checkpoint_every > 0 and head.seq % checkpoint_every == 0:
            write_checkpoint(session, keys(), head.seq, head.hash)
    session.flush()


def _public(private: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _unwrap_checked(keys: KeyRing, row: AuditKeyRow) -> bytes:
    private = keys.unwrap(row.key_version, row.wrapped_private)
    if _public(private) != row.public_key:
        raise TamperedArtifact(
            f"audit key {row.key_id}: the stored public key is not the wrapped key's: "
            "it was replaced"
        )
    return private


def _signing_key(session: Session, keys: KeyRing) -> tuple[str, bytes]:
    """The newest audit key, made (and wrapped) on first use; callers hold the head lock."""
    row = session.scalars(select(AuditKeyRow).order_by(AuditKeyRow.created_at.desc())).first()
    if row is not None:
        return row.key_id, _unwrap_checked(keys, row)
    private = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    public = _public(private)
    key_id = "ed25519:" + hashlib.sha256(public).hexdigest()[:16]
    version, wrapped = keys.wrap(private)
    session.add(
        AuditKeyRow(
            key_id=key_id,
            public_key=public,
            wrapped_private=wrapped,
            key_version=version,
            created_at=now_ms(),
        )
    )
    return key_id, private


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    time: int
    key_id: str


def write_checkpoint(session: Session, keys: KeyRing, seq: int, hash_: str) -> Checkpoint:
    """Sign (``seq``, ``hash_``); an existing checkpoint at ``seq`` is returned as is."""
    row = session.get(AuditCheckpointRow, seq)
    if row is None:
        key_id, private = _signing_key(session, keys)
        time = now_ms()
        signature = Ed25519PrivateKey.from_private_bytes(private).sign(
            _checkpoint_message(seq, hash_, time, key_id)
        )
        row = AuditCheckpointRow(seq=seq, hash=hash_, time=time, key_id=key_id, signature=signature)
        session.add(row)
    return Checkpoint(row.seq, row.hash, row.time, row.key_id)


# -- verification --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What ``mlplane audit verify`` found; ``first_bad_seq`` is None when ``ok``."""

    ok: bool
    events: int
    checkpoints: int
    last_seq: int
    last_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


def _pages(session: Session, table: Any, key: Any) -> Iterator[Any]:
    # Core rows in keyset pages: nothing accumulates in the session's identity map.
    last = 0
    while True:
        rows = session.execute(select(table).where(key > last).order_by(key).limit(_PAGE)).all()
        yield from rows
        if len(rows) < _PAGE:
            return
        last = rows[-1].seq


def verify_chain(session: Session, keys: KeyRing) -> VerifyReport:
    """Walk the whole chain in ``session`` (one snapshot), in bounded memory."""
    if session.get_bind().dialect.name == "postgresql":  # one snapshot across the pages
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    head = session.get(AuditChainHeadRow, _HEAD_ID)
    public = {r.key_id: r for r in session.scalars(select(AuditKeyRow))}
    checked: set[str] = set()
    cps = _pages(session, AuditCheckpointRow.__table__, AuditCheckpointRow.seq)
    cp = next(cps, None)
    count = n_cps = 0
    prev_seq, prev_hash, last_good_cp = 0, GENESIS, 0

    def bad(seq: int, problem: str) -> VerifyReport:
        return VerifyReport(False, count, n_cps, prev_seq, prev_hash, seq, problem)

    for ev in _pages(session, AuditEventRow.__table__, AuditEventRow.seq):
        seq = prev_seq + 1
        if ev.seq != seq:
            return bad(seq, f"event {seq} is missing (the chain goes on at {ev.seq})")
        if event_hash(ev._mapping) != ev.hash:
            return bad(seq, f"event {seq} was altered: its contents do not match its hash")
        if ev.prev_hash != prev_hash:
            return bad(
                seq,
                f"event {seq} does not follow event {seq - 1}: events were removed, "
                "reordered or inserted",
            )
        count, prev_seq, prev_hash = count + 1, seq, ev.hash
        while cp is not None and cp.seq <= seq:
            problem = _check_checkpoint(cp, seq, ev.hash, public, checked, keys, last_good_cp)
            if problem:
                return bad(cp.seq, problem)
            n_cps, last_good_cp, cp = n_cps + 1, cp.seq, next(cps, None)
    if cp is not None:
        return bad(
            prev_seq + 1,
            f"events after {prev_seq} were deleted: checkpoint {cp.seq} signed the chain "
            f"up to sequence {cp.seq}",
        )
    if head is not None and (head.seq, head.hash) != (prev_seq, prev_hash):
        return bad(
            min(head.seq, prev_seq) + 1,
            f"the chain ends at {prev_seq} but its head records {head.seq}: events after "
            f"{min(head.seq, prev_seq)} were deleted or added outside the audit log",
        )
    return VerifyReport(True, count, n_cps, prev_seq, prev_hash)


def _check_checkpoint(
    cp: Any,
    seq: int,
    hash_: str,
    public: Mapping[str, AuditKeyRow],
    checked: set[str],
    keys: KeyRing,
    last_good: int,
) -> str:
    key = public.get(cp.key_id)
    if key is None:
        return f"checkpoint {cp.seq} names an unknown key {cp.key_id}"
    if cp.key_id not in checked:
        try:
            _unwrap_checked(keys, key)
        except TamperedArtifact as exc:
            return f"checkpoint {cp.seq}: {exc}"
        checked.add(cp.key_id)
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(
            cp.signature, _checkpoint_message(cp.seq, cp.hash, cp.time, cp.key_id)
        )
    except InvalidSignature:
        return f"checkpoint {cp.seq} has an invalid signature: it was edited or forged"
    if cp.seq != seq or cp.hash != hash_:
        return (
            f"the chain at sequence {cp.seq} does not match its signed checkpoint: events "
            f"between {last_good + 1} and {cp.seq} were edited, inserted or removed"
        )
    return ""


# -- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEvent:
    seq: int
    time: int
    actor: str
    action: str
    resource: str
    project_id: int | None
    source: str
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def _entity(row: Any) -> AuditEvent:
    fields = dict(row._mapping)
    fields["details"] = json.loads(fields["details"] or "{}")
    return AuditEvent(**fields)


class AuditService:
    """Reading, verifying and checkpointing the audit log: platform admins only."""

    def __init__(self, db: Database, guard: Guard, keys: Callable[[], KeyRing]) -> None:
        self._db = db
        self._guard = guard
        self._keys = keys

    def events(
        self,
        p: Principal,
        *,
        since_ms: int | None = None,
        action: str | None = None,
        actor: str | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """The newest ``limit`` events matching the filters, oldest first."""
        if limit < 1:
            raise InvalidInput("limit must be at least 1")
        t = AuditEventRow.__table__
        stmt = select(t).order_by(t.c.seq.desc()).limit(limit)
        if since_ms is not None:
            stmt = stmt.where(t.c.time >= since_ms)
        if action:
            stmt = stmt.where(t.c.action == action)
        if actor:
            stmt = stmt.where(t.c.actor == actor)
        with self._guard.unit(write=False) as s:
            self._guard.require_platform_admin(p, action="audit.read", resource="audit")
            return [_entity(r) for r in reversed(s.execute(stmt).all())]

    def export(self, p: Principal, *, since_ms: int | None = None) -> Iterator[AuditEvent]:
        """Every event from ``since_ms`` on, oldest first, a page per read transaction."""
        with self._guard.unit(write=False):  # checked now, not on the first next()
            self._guard.require_platform_admin(p, action="audit.export", resource="audit")
        return self._export(since_ms)

    def _export(self, since_ms: int | None) -> Iterator[AuditEvent]:
        t = AuditEventRow.__table__
        last = 0
        while True:
            stmt = select(t).where(t.c.seq > last).order_by(t.c.seq).limit(_PAGE)
            if since_ms is not None:
                stmt = stmt.where(t.c.time >= since_ms)
            with self._db.read() as s:
                rows = s.execute(stmt).all()
            yield from (_entity(r) for r in rows)
            if len(rows) < _PAGE:
                return
            last = rows[-1].seq

    def verify(self, p: Principal) -> VerifyReport:
        """Check every hash, link and checkpoint; see :func:`verify_chain`."""
        with self._guard.unit(write=False) as s:
            self._guard.require_platform_admin(p, action="audit.verify", resource="audit")
            return verify_chain(s, self._keys())

    def checkpoint(self, p: Principal) -> Checkpoint:
        """Sign the current head of the chain now (and record that it was done)."""
        with self._guard.unit(write=True) as s:
            self._guard.require_platform_admin(p, action="audit.checkpoint", resource="audit")
            head = _lock_head(s)
            if head.seq == 0:
                raise InvalidInput("the audit log is empty: there is nothing to checkpoint")
            made = write_checkpoint(s, self._keys(), head.seq, head.hash)
            self._guard.audit(s, p, "audit.checkpoint", "audit", None, details={"seq": made.seq})
            return made
