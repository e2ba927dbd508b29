"""``mlplane gc``: remove stored bytes that nothing references any more.

Two kinds of garbage: chunks that no dataset version lists (left by versions
whose add was interrupted, or by files replaced in later versions and then
purged), and blobs that no chunk or artifact row names (left by a crash
between writing a blob and recording it, or by a multipart artifact upload
that was never completed nor aborted: uploads older than ``upload_expiry_s``
are dropped first, so their parts' blobs are orphans in the same run).

Safety with writers running: a chunk is removed only when it is unreferenced
AND it was neither stored nor reused within the grace period. Every add marks
the chunks it reuses (``seen_at``) before it looks them up, in its own
transaction, and the deletion re-checks that mark in the same statement that
deletes, so either the add sees the chunk gone and stores it again, or the
collector sees the fresh mark and keeps it. The grace period only has to
outlast one add (from storing its first chunk to recording its version).
Rows go first, blobs after: a crash in between leaves orphan blobs, which
the next run removes. Small chunks share pack blobs: a pack is deleted with
the last chunk that lives in it (a pack whose chunks are partly dead keeps
its bytes until then).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from mlplane.blobs.tables import ChunkRow
from mlplane.errors import InvalidInput
from mlplane.security import Permission, Principal
from mlplane.services import Services

MAX_GRACE_S = 100 * 365 * 24 * 3600.0
"""Longer than anything here has been stored, so a longer grace would keep the same
chunks; past ~1e305 s the cutoff in milliseconds no longer fits a float at all."""


@dataclass(frozen=True, slots=True)
class GcReport:
    chunks_deleted: int
    chunk_bytes_freed: int
    blobs_deleted: int
    """Orphan blobs (no chunk or artifact row names them), besides the chunks' own."""
    kept_young: int
    """Unreferenced chunks kept because they are younger than the grace period."""
    referenced_chunks: int
    grace_s: float
    dry_run: bool
    uploads_expired: int = 0
    """Multipart artifact uploads older than the expiry, dropped (their parts become orphan
    blobs). Last and defaulted so a client still reads a report from an older server."""


def collect_garbage(
    services: Services, p: Principal, *, grace_s: float | None = None, dry_run: bool = False
) -> GcReport:
    """Delete unreferenced chunks and orphan blobs older than the grace period."""
    grace = services.settings.gc_grace_s if grace_s is None else grace_s
    with services.guard.unit(write=False):
        services.guard.require(
            p, Permission.ADMIN, project="*", project_id=None, action="gc", resource="store"
        )
    if not 0 <= grace <= MAX_GRACE_S:  # NaN fails both comparisons too
        raise InvalidInput(f"grace_s must be between 0 and {MAX_GRACE_S:.0f} s, not {grace!r}")
    cutoff_ms = int((time.time() - grace) * 1000)
    scan_started = int(time.time() * 1000)
    uploads_since_ms = scan_started - int(services.settings.upload_expiry_s * 1000)
    expired = services.tracking.expire_uploads(uploads_since_ms, dry_run=dry_run)
    db = services.db
    with db.read() as s:  # chunks of dataset versions and of model versions
        referenced = services.chunk_users(s)
    last_used = func.coalesce(ChunkRow.seen_at, ChunkRow.created_at)
    with db.read() as s:
        rows = s.execute(
            select(ChunkRow.digest, ChunkRow.blob, ChunkRow.stored_size, last_used)
        ).all()
    unreferenced = [r for r in rows if r[0] not in referenced]
    old = [r for r in unreferenced if r[3] < cutoff_ms]
    deleted: list[tuple[str, str, int]] = []
    if not dry_run:
        for i in range(0, len(old), 500):
            part = old[i : i + 500]
            with db.write() as s:
                # Re-checked at deletion: a chunk reused, or listed by a version recorded,
                # since the scan is kept.
                recent = services.data.referenced_chunks(since_ms=scan_started, session=s)
                digests = [r[0] for r in part if r[0] not in recent]
                gone = s.execute(
                    delete(ChunkRow)
                    .where(ChunkRow.digest.in_(digests), last_used < cutoff_ms)
                    .returning(ChunkRow.digest, ChunkRow.blob, ChunkRow.stored_size)
                ).all()
            deleted += [(g[0], g[1], g[2]) for g in gone]
        for blob in _unused_blobs(services, {blob for _, blob, _ in deleted}):
            services.blobs.delete(blob)
    else:
        deleted = [(r[0], r[1], r[2]) for r in old]
    orphans = _orphan_blobs(services, cutoff_ms / 1000, uploads_since_ms)
    if not dry_run:
        for blob in orphans:
            services.blobs.delete(blob)
    services.guard.record(
        p,
        "gc",
        "store",
        None,
        details={
            "chunks": len(deleted),
            "bytes": sum(d[2] for d in deleted),
            "orphan_blobs": len(orphans),
            "uploads_expired": expired,
            "dry_run": dry_run,
        },
    )
    return GcReport(
        chunks_deleted=len(deleted),
        chunk_bytes_freed=sum(d[2] for d in deleted),
        blobs_deleted=len(orphans),
        kept_young=len(unreferenced) - len(old),
        referenced_chunks=len(rows) - len(unreferenced),
        grace_s=grace,
        dry_run=dry_run,
        uploads_expired=expired,
    )


def _unused_blobs(services: Services, blobs: set[str]) -> list[str]:
    """The blobs of deleted chunks that no chunk row names any more: a pack goes when the
    last of its chunks goes. No new row can name a pack later: packs are always new bytes.
    One scan of the blob column (no index on it: every chunk insert would pay for one)."""
    with services.db.read() as s:
        used = set(s.scalars(select(ChunkRow.blob).distinct()))
    return sorted(blobs - used)


def _orphan_blobs(services: Services, cutoff_s: float, uploads_since_ms: int) -> list[str]:
    """Blobs older than the cutoff that no chunk row, no artifact and no upload started
    since ``uploads_since_ms`` names."""
    with services.db.read() as s:
        known = set(s.scalars(select(ChunkRow.blob)))
    known |= services.tracking.referenced_blobs(uploads_since_ms=uploads_since_ms)
    return [d for d, mtime in services.blobs.iter_blobs() if d not in known and mtime < cutoff_s]
