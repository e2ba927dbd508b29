"""Many small files: read, hashed and sealed in worker processes.

A small file is one chunk, and storing it is mostly per-file Python (open, read,
hash, compress, generate and wrap a data key, encrypt) that holds the GIL, so
threads do not spread it over the cores. Worker processes do that part; this
process looks the digests up, writes the new chunks as pack blobs and records
them, a batch at a time, exactly as the threaded path does (blob first, row
after; a chunk found already stored is marked as reused, not written again).

A worker seals before anyone knows whether the chunk is new: for a chunk that
is already stored, the sealed copy is dropped. That costs a wasted seal only on
the files the hash cache did not recognise, and spares a round trip per batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Any

from mlplane.blobs import _seal
from mlplane.blobs.chunks import _tasks
from mlplane.db.engine import now_ms

if TYPE_CHECKING:
    from mlplane.blobs.chunks import ChunkStore, _Put

PROCESSES_FROM = 2000
"""Small files from this many go to worker processes (fewer do not repay their start)."""
_JOB_FILES = 256  # a worker's job: this many files ...
_JOB_BYTES = 4 << 20  # ... or this many bytes, whichever comes first
_BATCH = 2048  # chunks per lookup and per insert, as the threaded path batches them


def put_small(
    store: ChunkStore,
    put: _Put,
    paths: Sequence[str | os.PathLike[str]],
    sizes: Sequence[int],
    limit: int,
    workers: int,
) -> list[int]:
    """Store the files of one chunk (``0 < size <= limit``) in worker processes; the
    indices of the other files, for the threaded path."""
    from mlplane.compute import LocalExecutor

    small = [i for i, n in enumerate(sizes) if 0 < n <= limit]
    if len(small) < PROCESSES_FROM:  # (the caller sends only when there are 2+ workers)
        return list(range(len(paths)))
    taken = set(small)
    rest = [i for i in range(len(paths)) if i not in taken]
    version, master = store._keys.provider.current()
    results = LocalExecutor(workers).map(
        _seal.seal_small_files,
        _jobs(small, paths, sizes, limit),
        setup=_seal.start_worker,
        setup_args=(store._level, version, master),
        max_in_flight=8 * workers,  # the workers keep sealing while a batch is recorded
        preload=["mlplane.blobs._seal"],
    )
    batches = _Batches(store, put)
    pending: list[tuple[int, Any]] = []
    try:
        for indices, sealed in results:
            pending.extend(zip(indices, sealed, strict=True))
            if len(pending) >= _BATCH:
                rest.extend(batches.add(pending))
                pending = []
        rest.extend(batches.add(pending))
        batches.close()
    except BaseException:
        batches.abandon()
        raise
    return sorted(rest)


def _jobs(
    small: list[int], paths: Sequence[str | os.PathLike[str]], sizes: Sequence[int], limit: int
) -> Iterator[tuple[list[int], list[str], int]]:
    job: list[int] = []
    size = 0
    for i in small:
        job.append(i)
        size += sizes[i]
        if len(job) >= _JOB_FILES or size >= _JOB_BYTES:
            yield job, [os.fspath(paths[k]) for k in job], limit
            job, size = [], 0
    if job:
        yield job, [os.fspath(paths[k]) for k in job], limit


class _Batches:
    """Sealed files on their way in, a batch at a time: this thread looks a batch up while
    a pool thread writes the batch before it (its pack blobs, then its rows; both
    release the GIL for most of their time)."""

    def __init__(self, store: ChunkStore, put: _Put) -> None:
        self.store = store
        self.put = put
        self.in_flight: tuple[Future[list[tuple[Any, ...]]], dict[str, int], int] | None = None

    def add(self, pending: list[tuple[int, Any]]) -> list[int]:
        """Hand a batch on; the indices to store again the usual way (files that grew
        past one chunk since they were listed)."""
        put = self.put
        redo = [i for i, s in pending if isinstance(s, int)]
        chunks = [(i, s) for i, s in pending if isinstance(s, tuple)]
        known = self.store.reuse({s[0] for _, s in chunks})
        if self.in_flight is not None:
            known.update(self.in_flight[1])  # being written by the batch before
        owner: dict[str, int] = {}
        new: list[_seal.Sealed] = []
        size = 0
        for i, sealed in chunks:
            digest, n = sealed[0], sealed[1]
            put.count(i, digest, n)
            size += n
            if digest not in known and digest not in owner:
                owner[digest] = i
                new.append(sealed)
        future = self.store._pool.submit(_write_and_record, self.store, new)
        self._finish()
        self.in_flight = (future, owner, size)
        return redo

    def close(self) -> None:
        self._finish()

    def abandon(self) -> None:
        if self.in_flight is not None:
            wait([self.in_flight[0]])

    def _finish(self) -> None:
        if self.in_flight is None:
            return
        future, owner, size = self.in_flight
        self.in_flight = None
        for row in future.result():
            self.put.credit(owner[row[0]], row)
        if self.put.progress and size:
            self.put.progress(size)


def _write_and_record(store: ChunkStore, new: list[_seal.Sealed]) -> list[tuple[Any, ...]]:
    """Write new chunks as pack blobs, then record their rows (blob first, row after)."""
    created = now_ms()
    rows: list[tuple[Any, ...]] = []
    for a, b in _tasks([s[1] for s in new]):  # pack groups, as the threads make them
        rows.extend(store._write(created, new[a:b]))
    if rows:
        store._record(rows)
    return rows
