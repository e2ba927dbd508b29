"""Putting a version's local files into the chunk store, skipping unchanged files.

A file whose path, size, mtime and inode match the hash cache (as DVC keys its
cache) is not read again: its chunk list is taken from the cache, provided the
chunks still exist (garbage collection may have removed them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import blake3
from sqlalchemy import select

from mlplane.blobs.chunks import ChunkRef, ChunkStore
from mlplane.blobs.store import PREFIX
from mlplane.blobs.tables import ChunkRow
from mlplane.datasets.tables import HashCacheRow
from mlplane.db.engine import Database


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of a version as stored: path inside the version, size, digest, chunks."""

    rel: str
    size: int
    digest: str
    refs: list[ChunkRef]


@dataclass
class StoreResult:
    files: list[StoredFile] = field(default_factory=list)
    bytes_in: int = 0
    bytes_stored: int = 0
    rehashed: int = 0


def file_digest(refs: Sequence[ChunkRef]) -> str:
    """A file's digest: BLAKE3 over its ordered chunk digests."""
    return PREFIX + blake3.blake3("\n".join(r.digest for r in refs).encode()).hexdigest()


def store_files(
    db: Database,
    chunks: ChunkStore,
    files: Sequence[tuple[str, Path]],
    *,
    progress: Callable[[int], None] | None = None,
    use_cache: bool = True,
) -> StoreResult:
    """Store ``(rel, path)`` files; unchanged files (by the hash cache) are not read."""
    out = StoreResult()
    cache = _cached(db, [f for _, f in files]) if use_cache else {}
    new_cache: list[dict[str, object]] = []
    for rel, path in files:
        st = path.stat()
        key = str(path.resolve())
        hit = cache.get(key)
        if hit is not None and hit[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
            refs = hit[3]
            if progress:
                progress(st.st_size)
        else:
            refs, stats = chunks.put_file(path, progress=progress)
            out.bytes_in += stats.bytes_in
            out.bytes_stored += stats.bytes_stored
            out.rehashed += 1
            if use_cache:
                new_cache.append(
                    {
                        "path": key,
                        "size": st.st_size,
                        "mtime_ns": st.st_mtime_ns,
                        "inode": st.st_ino,
                        "digest": file_digest(refs),
                        "chunks": json.dumps([[r.digest, r.size] for r in refs]),
                    }
                )
        out.files.append(StoredFile(rel, st.st_size, file_digest(refs), refs))
    _remember(db, new_cache)
    return out


def _cached(db: Database, paths: Sequence[Path]) -> dict[str, tuple[int, int, int, list[ChunkRef]]]:
    keys = [str(p.resolve()) for p in paths]
    out: dict[str, tuple[int, int, int, list[ChunkRef]]] = {}
    with db.read() as s:
        for i in range(0, len(keys), 500):
            for r in s.execute(
                select(HashCacheRow.__table__).where(HashCacheRow.path.in_(keys[i : i + 500]))
            ):
                out[r.path] = (
                    r.size,
                    r.mtime_ns,
                    r.inode,
                    [ChunkRef(d, n) for d, n in json.loads(r.chunks)],
                )
        # A cached file whose chunks are gone (garbage-collected) is stored again.
        wanted = list({c.digest for v in out.values() for c in v[3]})
        present: set[str] = set()
        for i in range(0, len(wanted), 500):
            present |= set(
                s.scalars(select(ChunkRow.digest).where(ChunkRow.digest.in_(wanted[i : i + 500])))
            )
    return {k: v for k, v in out.items() if all(c.digest in present for c in v[3])}


def _remember(db: Database, rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    with db.write() as s:
        for row in rows:
            s.merge(HashCacheRow(**row))
