"""Crypto-shredding: destroy chunks' data keys so their blobs can never be read again."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete
from sqlalchemy.orm import Session

from mlplane.blobs.tables import ChunkRow

_PART = 500


def shred_chunks(session: Session, digests: Iterable[str]) -> int:
    """Delete these chunks' rows, in the caller's transaction; returns how many went.

    A row holds the only copy of its chunk's wrapped data key, so its blob, and every
    backup of that blob, can no longer be decrypted. The rows are deleted rather than
    kept with a NULL key: a shredded row would still be found by ``ChunkStore.reuse``,
    and re-adding the same bytes would record a version over a chunk nobody can read;
    with the row gone they are stored afresh under a new key. The blobs no row names
    any more are removed by garbage collection (a pack when its last chunk goes).
    Backups of the metadata database taken before still hold the wrapped keys: rotate
    the master key and retire the old version to make those useless too.
    """
    wanted = sorted(set(digests))
    gone = 0
    for i in range(0, len(wanted), _PART):
        result = session.execute(delete(ChunkRow).where(ChunkRow.digest.in_(wanted[i : i + _PART])))
        gone += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return gone
