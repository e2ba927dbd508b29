"""Files as de-duplicated, compressed, encrypted chunks.

A file is cut by content-defined chunking (FastCDC), so an edit or an append
changes only the chunks around it. Each chunk is named by the BLAKE3 digest of
its plaintext and stored once, whichever file or version it belongs to:
compressed with zstd unless it does not compress (Parquet pages, images),
then encrypted with AES-256-GCM under its own random data key. Only the data
key's wrapped form is kept, in the ``chunks`` table, under a versioned master
key (envelope encryption): no plaintext ever reaches the blob store, and
destroying a chunk's wrapped key makes it unreadable everywhere (shredding).

The blob is written before its row, so a crash leaves at most an orphan blob
for garbage collection, never a row that points nowhere; a re-run finds the
chunks already stored and skips them.

Writing is a pipeline over batches of chunks, from one big file or from many
small ones: the pool hashes a batch, one query finds which chunks are already
stored, the pool seals and writes the new ones, and one insert records them,
while the next batch is being read and cut. BLAKE3, zstd, the streaming
AES-GCM encryptor and file I/O release the GIL, so the pool's threads keep
the cores busy; small chunks are handled in groups, so that a 5 KB file does
not pay for a task, a query and a transaction of its own.

Small chunks are also stored in groups: each is sealed on its own (its own data
key, nonce and tag, so it stays readable and shreddable alone), and a group's
sealed chunks are concatenated into one pack blob, each row keeping its offset.
A folder of 100,000 small files becomes some 1,600 blobs instead of 100,000
files (or PUT requests) in the blob store. A pack is always new bytes (fresh
keys and nonces), so no later row can point into a pack that garbage
collection finds unreferenced.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyfastcdc import FastCDC
from sqlalchemy import select

from mlplane.blobs import _seal
from mlplane.blobs._seal import Sealed, Sealer, aad
from mlplane.blobs.store import PREFIX, BlobStore
from mlplane.blobs.tables import ChunkRow
from mlplane.compute._base import default_workers
from mlplane.db.engine import Database, now_ms
from mlplane.errors import NotFound, TamperedArtifact
from mlplane.security.keys import KeyRing

AVG_CHUNK = 1 << 20
_NONCE = _seal.NONCE
_BATCH_BYTES = 32 << 20  # a batch: one digest lookup and one insert ...
_BATCH_CHUNKS = 2048  # ... for at most this many chunks (small files)
_TASK_BYTES = 4 << 20  # one pool task hashes or seals about this much ...
_TASK_CHUNKS = 64  # ... or this many chunks, whichever comes first
_READ_WHOLE = 8 << 20  # files up to this size are read in one call; larger ones are mapped
_IN_LIST = 900  # digests per IN (...): within SQLite's oldest limit on bound parameters
_READ_AHEAD = 16  # chunks decrypted ahead of the reader
_PACK_BELOW = 256 << 10  # chunks smaller than this share pack blobs


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of a file, in order: its plaintext digest and size."""

    digest: str
    size: int


@dataclass
class PutStats:
    """What a put stored: bytes read, new chunks, bytes written to the blob store."""

    chunks: int = 0
    new_chunks: int = 0
    bytes_in: int = 0
    bytes_stored: int = 0


@dataclass
class _Batch:
    """Chunks on their way: data, the file each belongs to, and the pool's work."""

    data: list[Any] = field(default_factory=list)  # bytes, or views into a mapped file
    owners: list[int] = field(default_factory=list)
    size: int = 0
    new: dict[str, int] = field(default_factory=dict)  # digest -> index, chunks to write
    futures: list[Future[list[tuple[Any, ...]]]] = field(default_factory=list)


def _tasks(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Split a batch into index ranges of about ``_TASK_BYTES`` or ``_TASK_CHUNKS``."""
    out, start, acc = [], 0, 0
    for i, n in enumerate(sizes):
        acc += n
        if acc >= _TASK_BYTES or i + 1 - start >= _TASK_CHUNKS:
            out.append((start, i + 1))
            start, acc = i + 1, 0
    if start < len(sizes):
        out.append((start, len(sizes)))
    return out


def _hash_all(pieces: Sequence[Any]) -> list[str]:
    return [PREFIX + blake3.blake3(p).hexdigest() for p in pieces]


_TABLE = ChunkRow.__tablename__
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)  # UPDATE ... RETURNING in SQLite
_COLUMNS = (
    "digest",
    "blob",
    "size",
    "stored_size",
    "compressed",
    "key_version",
    "wrapped_key",
    "created_at",
    "pack_offset",
)


def _mark(db: Database) -> str:
    """The driver's placeholder: sqlite3 takes ``?``, psycopg ``%s``."""
    return "?" if db.is_sqlite else "%s"


def _in_lists(db: Database, keys: list[str]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """``digest IN (...)`` conditions covering ``keys``: SQL and parameters."""
    if db.is_sqlite:
        for i in range(0, len(keys), _IN_LIST):
            part = keys[i : i + _IN_LIST]
            yield f"digest IN ({', '.join('?' * len(part))})", tuple(part)
    else:  # one array parameter
        for i in range(0, len(keys), 10 * _IN_LIST):
            yield "digest = ANY(%s)", (keys[i : i + 10 * _IN_LIST],)


class ChunkStore:
    """Store and read files as chunks in a :class:`BlobStore`, keys in the database."""

    def __init__(
        self,
        blobs: BlobStore,
        db: Database,
        keys: KeyRing,
        *,
        avg_size: int = AVG_CHUNK,
        level: int = 1,
        threads: int | None = None,
        processes: int | None = None,
    ) -> None:
        self._blobs = blobs
        self._db = db
        self._keys = keys
        self._cdc = FastCDC(avg_size=avg_size)
        self._level = level
        # One thread per core: zstd, BLAKE3, AES-GCM and file I/O release the GIL, so
        # that many keep the cores busy. More threads only add GIL hand-offs (measured
        # with 100,000 small files: 4 threads on 2 cores cost 30 % more CPU than 2).
        threads = threads or max(2, min(8, os.cpu_count() or 2))
        self._workers = min(8, default_workers()) if processes is None else processes
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="mlplane-chunks")
        self._local = threading.local()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- writing -----------------------------------------------------------------------------

    def put_file(
        self, path: str | os.PathLike[str], *, progress: Callable[[int], None] | None = None
    ) -> tuple[list[ChunkRef], PutStats]:
        """Store a file; returns its chunk list (in order) and what was new."""
        return self.put_files([path], progress=progress)[0]

    def put_files(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        progress: Callable[[int], None] | None = None,
        sizes: Sequence[int] | None = None,
    ) -> list[tuple[list[ChunkRef], PutStats]]:
        """Store many files in shared batches; per file, its chunk list and what was new.

        At most two batches are in memory (a big file is mapped, not read); ``progress``
        gets the bytes of each batch once its chunks are recorded. With the files'
        ``sizes`` (as listed), thousands of small files are sealed in worker processes
        (see :mod:`mlplane.blobs._small`).
        """
        put = _Put(self, len(paths), progress)
        try:
            rest: Sequence[int] = range(len(paths))
            if sizes is not None and self._workers > 1:
                from mlplane.blobs._small import put_small

                limit = min(self._cdc.min_size, _PACK_BELOW - 1)
                rest = put_small(self, put, paths, sizes, limit, self._workers)
            for i in rest:
                for piece in self._pieces(paths[i]):
                    put.add(i, piece)
            put.close()
        except BaseException:
            put.abandon()
            raise
        return list(zip(put.refs, put.stats, strict=True))

    def expect_files(self, count: int) -> None:
        """Tell the store that ``count`` files are coming: enough small ones go to worker
        processes, whose start then overlaps the caller's listing of the files."""
        from mlplane.blobs._small import PROCESSES_FROM

        if count >= PROCESSES_FROM and self._workers > 1:
            from mlplane.compute._local import warm_up

            warm_up(["mlplane.blobs._seal"])

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[list[ChunkRef], PutStats]:
        """Store already-cut pieces (small files are one chunk each)."""
        put = _Put(self, 1, None)
        try:
            for piece in chunks:
                put.add(0, piece)
            put.close()
        except BaseException:
            put.abandon()
            raise
        return put.refs[0], put.stats[0]

    def _pieces(self, path: str | os.PathLike[str]) -> Iterable[Any]:
        """A file's chunks: read whole when small, else cut straight from a mapping."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size > _READ_WHOLE:
                return (c.data for c in self._cdc.cut_file(os.fspath(path)))
            data = os.read(fd, size + 1)  # one more byte: a file that grew is read to its end
            while len(data) > size and (more := os.read(fd, _READ_WHOLE)):
                data += more
        finally:
            os.close(fd)
        if len(data) <= self._cdc.min_size:  # FastCDC never cuts below its minimum
            return [data] if data else []
        return [c.data for c in self._cdc.cut_buf(data)]

    def reuse(self, digests: Iterable[str]) -> set[str]:
        """Which of these chunks the store holds, marked as reused now (``seen_at``).

        Garbage collection keeps a chunk reused within its grace period, and re-checks
        the mark in the statement that deletes: the mark is written in the same
        transaction as the lookup, before it, so a chunk found here cannot vanish before
        the version that lists it is recorded (see :mod:`mlplane.gc`).
        """
        wanted = list(set(digests))
        found: set[str] = set()
        if not wanted:
            return found
        # Found first in a read (no write lock, no commit): a fresh add finds nothing and
        # writes nothing here. Only what the marking statement itself finds is returned.
        with self._db.read() as s:
            run = s.connection().exec_driver_sql
            wanted = [
                r[0]
                for where, params in _in_lists(self._db, wanted)
                for r in run(f"SELECT digest FROM {_TABLE} WHERE {where}", params)
            ]
        if not wanted:
            return found
        now = now_ms()
        mark = _mark(self._db)
        with self._db.write() as s:
            run = s.connection().exec_driver_sql
            for where, params in _in_lists(self._db, wanted):
                mark_them = f"UPDATE {_TABLE} SET seen_at = {mark} WHERE {where}"
                if _RETURNING or not self._db.is_sqlite:
                    found.update(r[0] for r in run(f"{mark_them} RETURNING digest", (now, *params)))
                else:
                    run(mark_them, (now, *params))
                    found.update(
                        r[0] for r in run(f"SELECT digest FROM {_TABLE} WHERE {where}", params)
                    )
        return found

    def _record(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert chunk rows (``_COLUMNS`` order), many per statement, in one transaction."""
        # Plain driver statements: SQLAlchemy's per-row work would cost more than the
        # database itself for 100,000 small files.
        values = ", ".join([_mark(self._db)] * len(_COLUMNS))
        sql = (
            f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES ({values}) "
            "ON CONFLICT (digest) DO NOTHING"
        )
        with self._db.write() as s:
            s.connection().exec_driver_sql(sql, rows)

    def _seal_all(self, items: list[tuple[str, Any]]) -> list[tuple[Any, ...]]:
        """Seal and write a group of chunks (in a pool thread); their rows, blob first.

        Large chunks get a blob each; the small ones of the group share one pack blob.
        """
        rows: list[tuple[Any, ...]] = []
        created = now_ms()
        nonces = os.urandom(_NONCE * len(items))  # one system call for the group
        packed: list[Sealed] = []
        for i, (digest, plain) in enumerate(items):
            nonce = nonces[i * _NONCE : (i + 1) * _NONCE]
            key, version, wrapped = self._keys.new_data_key()
            compressed, stored = self._sealer().seal(digest, plain, nonce, key)
            sealed = (digest, len(plain), compressed, version, wrapped, stored)
            if len(plain) < _PACK_BELOW:
                packed.append(sealed)
            else:
                rows.extend(self._write(created, [sealed]))
        return rows + self._write(created, packed)

    def _write(self, created: int, sealed: Sequence[Sealed]) -> list[tuple[Any, ...]]:
        """Write sealed chunks to the blob store, as one pack blob when there are several;
        their rows (``_COLUMNS`` order)."""
        put = self._blobs.put_bytes
        if len(sealed) == 1:  # a pack of one is just a blob
            digest, size, compressed, version, wrapped, stored = sealed[0]
            # Fresh key and nonce: no blob can hold this ciphertext yet, nothing to check.
            blob, stored_size = put(stored, new=True)
            return [(digest, blob, size, stored_size, compressed, version, wrapped, created, None)]
        if not sealed:
            return []
        blob, _ = put(b"".join(p[5] for p in sealed), new=True)
        rows, offset = [], 0
        for digest, size, compressed, version, wrapped, stored in sealed:
            rows.append(
                (digest, blob, size, len(stored), compressed, version, wrapped, created, offset)
            )
            offset += len(stored)
        return rows

    def _sealer(self) -> Sealer:
        local = self._local
        if not hasattr(local, "sealer"):  # zstd contexts are not thread-safe: one per thread
            local.sealer = Sealer(self._level)
        return local.sealer  # type: ignore[no-any-return]

    def _unzstd(self) -> zstandard.ZstdDecompressor:
        local = self._local
        if not hasattr(local, "unzstd"):
            local.unzstd = zstandard.ZstdDecompressor()
        return local.unzstd  # type: ignore[no-any-return]

    # -- reading -----------------------------------------------------------------------------

    def iter_bytes(self, refs: Sequence[ChunkRef]) -> Iterator[bytes]:
        """The file's bytes, chunk by chunk, decrypted and checked."""
        # A few chunks at a time: decryption runs ahead in the pool, memory stays bounded.
        for i in range(0, len(refs), _READ_AHEAD):
            part = refs[i : i + _READ_AHEAD]
            with self._db.read() as s:
                # Plain rows: they outlive the session (ORM objects would expire).
                rows = {
                    r.digest: r
                    for r in s.execute(
                        select(*ChunkRow.__table__.columns).where(
                            ChunkRow.digest.in_({r.digest for r in part})
                        )
                    )
                }
            yield from self._pool.map(self._open, part, [rows.get(r.digest) for r in part])

    def _open(self, ref: ChunkRef, row: Any) -> bytes:
        if row is None:
            raise NotFound(f"chunk {ref.digest} is not in the store")
        if row.wrapped_key is None:
            raise TamperedArtifact(f"chunk {ref.digest} was shredded: its data is gone for good")
        if row.pack_offset is None:
            stored = self._blobs.read_bytes(row.blob)
        else:
            stored = self._blobs.read_range(row.blob, row.pack_offset, row.stored_size)
        key = self._keys.unwrap(row.key_version, row.wrapped_key)
        try:
            body = AESGCM(key).decrypt(
                stored[:_NONCE], stored[_NONCE:], aad(ref.digest, row.compressed)
            )
        except InvalidTag:
            raise TamperedArtifact(
                f"chunk {ref.digest} failed authentication: it was modified"
            ) from None
        plain = (
            self._unzstd().decompress(body, max_output_size=row.size) if row.compressed else body
        )
        if PREFIX + blake3.blake3(plain).hexdigest() != ref.digest:
            raise TamperedArtifact(f"chunk {ref.digest} does not match its digest")
        return plain

    def get_file(self, refs: Sequence[ChunkRef], dest: str | os.PathLike[str]) -> None:
        """Write the file to ``dest`` atomically (temp file + rename)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            with open(tmp, "wb") as out:
                for data in self.iter_bytes(refs):
                    out.write(data)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)


class _Put:
    """One put: the batch being filled and the one the pool is sealing and writing."""

    def __init__(
        self, store: ChunkStore, files: int, progress: Callable[[int], None] | None
    ) -> None:
        self.store = store
        self.refs: list[list[ChunkRef]] = [[] for _ in range(files)]
        self.stats = [PutStats() for _ in range(files)]
        self.progress = progress
        self.filling = _Batch()
        self.in_flight: _Batch | None = None

    def count(self, owner: int, digest: str, size: int) -> None:
        """The next chunk of file ``owner``: in its chunk list and its stats."""
        self.refs[owner].append(ChunkRef(digest, size))
        st = self.stats[owner]
        st.chunks += 1
        st.bytes_in += size

    def credit(self, owner: int, row: tuple[Any, ...]) -> None:
        """A chunk row recorded for file ``owner``: a new chunk, its stored bytes."""
        st = self.stats[owner]
        st.new_chunks += 1
        st.bytes_stored += int(row[3])

    def add(self, owner: int, piece: Any) -> None:
        b = self.filling
        b.data.append(piece)
        b.owners.append(owner)
        b.size += len(piece)
        if b.size >= _BATCH_BYTES or len(b.data) >= _BATCH_CHUNKS:
            self._start()

    def close(self) -> None:
        if self.filling.data:
            self._start()
        if self.in_flight is not None:
            batch, self.in_flight = self.in_flight, None
            self._finish(batch)

    def abandon(self) -> None:
        """After an error: let the pool's writes end before the caller goes on."""
        if self.in_flight is not None:
            wait(self.in_flight.futures)

    def _start(self) -> None:
        """Hash the filled batch, look its chunks up, hand the new ones to the pool; then
        record the batch before it (at most two in flight)."""
        b, self.filling = self.filling, _Batch()
        pool = self.store._pool
        spans = _tasks([len(p) for p in b.data])
        digests = [d for part in pool.map(_hash_all, [b.data[i:j] for i, j in spans]) for d in part]
        known = self.store.reuse(digests)
        if self.in_flight is not None:
            known.update(self.in_flight.new)  # being written by the batch before
        for i, (d, piece, owner) in enumerate(zip(digests, b.data, b.owners, strict=True)):
            self.count(owner, d, len(piece))
            if d not in known and d not in b.new:
                b.new[d] = i
        todo = list(b.new.items())
        for i, j in _tasks([len(b.data[k]) for _, k in todo]):
            items = [(d, b.data[k]) for d, k in todo[i:j]]
            b.futures.append(pool.submit(self.store._seal_all, items))
        previous, self.in_flight = self.in_flight, b
        if previous is not None:
            self._finish(previous)

    def _finish(self, b: _Batch) -> None:
        """Wait for a batch's blobs, then record their rows (blob first, row after)."""
        try:
            rows = [row for f in b.futures for row in f.result()]
        except BaseException:
            wait(b.futures)
            raise
        if rows:
            self.store._record(rows)
            for row in rows:
                self.credit(b.owners[b.new[row[0]]], row)
        if self.progress:
            self.progress(b.size)
        b.data.clear()  # drop the views, so a mapped file can be unmapped
