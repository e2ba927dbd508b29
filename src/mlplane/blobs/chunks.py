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
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyfastcdc import FastCDC
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mlplane.blobs.store import PREFIX, BlobStore
from mlplane.blobs.tables import ChunkRow
from mlplane.db.engine import Database, now_ms
from mlplane.errors import NotFound, TamperedArtifact
from mlplane.security.keys import KeyRing

AVG_CHUNK = 1 << 20
_NONCE = 12
_BATCH_BYTES = 32 << 20
_READ_AHEAD = 16
_MIN_SAVING = 0.95  # keep the compressed form only when it saves at least 5 %


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
    reported: int = 0  # bytes already passed to the progress callback


@dataclass
class _Pending:
    """A batch whose chunks the pool is sealing and writing."""

    digests: set[str]
    futures: list[Future[dict[str, Any]]]
    bytes_in: int


def _aad(digest: str, compressed: bool) -> bytes:
    # Binds each ciphertext to its chunk and form: a swapped or relabelled blob fails.
    return digest.encode() + (b"|zstd" if compressed else b"|raw")


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
        threads: int = 2,
    ) -> None:
        self._blobs = blobs
        self._db = db
        self._keys = keys
        self._cdc = FastCDC(avg_size=avg_size)
        self._level = level
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="mlplane-chunks")
        self._local = threading.local()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- writing -----------------------------------------------------------------------------

    def put_file(
        self, path: str | os.PathLike[str], *, progress: Callable[[int], None] | None = None
    ) -> tuple[list[ChunkRef], PutStats]:
        """Store a file; returns its chunk list (in order) and what was new.

        Batches overlap: while one batch is compressed, encrypted and written by the
        pool, the next is cut and hashed; at most two batches are in memory.
        """
        refs: list[ChunkRef] = []
        stats = PutStats()
        if Path(path).stat().st_size == 0:
            return refs, stats
        pending: _Pending | None = None
        batch: list[bytes] = []
        size = 0
        for chunk in self._cdc.cut_file(str(path)):
            batch.append(bytes(chunk.data))
            size += chunk.length
            if size >= _BATCH_BYTES:
                new_refs, started = self._start_batch(batch, stats, pending)
                refs += new_refs
                self._finish(pending, stats, progress)
                pending, batch, size = started, [], 0
        if batch:
            new_refs, started = self._start_batch(batch, stats, pending)
            refs += new_refs
            self._finish(pending, stats, progress)
            pending = started
        self._finish(pending, stats, progress)
        return refs, stats

    def put_chunks(self, chunks: Iterable[bytes]) -> tuple[list[ChunkRef], PutStats]:
        """Store already-cut pieces (small files are one chunk each)."""
        stats = PutStats()
        refs, pending = self._start_batch(list(chunks), stats, None)
        self._finish(pending, stats, None)
        return refs, stats

    def _start_batch(
        self, batch: list[bytes], stats: PutStats, in_flight: _Pending | None
    ) -> tuple[list[ChunkRef], _Pending]:
        """Hash a batch, then hand its unknown chunks to the pool to seal and write."""
        digests = [PREFIX + d for d in self._pool.map(_b3, batch)]
        refs = [ChunkRef(d, len(b)) for d, b in zip(digests, batch, strict=True)]
        stats.chunks += len(batch)
        stats.bytes_in += sum(len(b) for b in batch)
        with self._db.read() as s:
            known = set(s.scalars(select(ChunkRow.digest).where(ChunkRow.digest.in_(set(digests)))))
        if in_flight is not None:
            known |= in_flight.digests  # being written by the previous batch
        todo: dict[str, bytes] = {}
        for d, b in zip(digests, batch, strict=True):
            if d not in known and d not in todo:
                todo[d] = b
        futures = [self._pool.submit(self._seal_and_write, item) for item in todo.items()]
        return refs, _Pending(set(todo), futures, stats.bytes_in)

    def _finish(
        self, pending: _Pending | None, stats: PutStats, progress: Callable[[int], None] | None
    ) -> None:
        """Wait for a batch's blobs, then record their rows (blob first, row after)."""
        if pending is None:
            return
        rows = [f.result() for f in pending.futures]
        if rows:
            stats.bytes_stored += sum(int(r["stored_size"]) for r in rows)
            stats.new_chunks += len(rows)
            insert = pg_insert if self._db.dialect == "postgresql" else sqlite_insert
            with self._db.write() as s:
                s.execute(insert(ChunkRow).on_conflict_do_nothing(index_elements=["digest"]), rows)
        if progress:
            progress(pending.bytes_in - stats.reported)
            stats.reported = pending.bytes_in

    def _seal_and_write(self, item: tuple[str, bytes]) -> dict[str, Any]:
        digest, plain_size, compressed, version, wrapped, stored = self._seal(item)
        blob, stored_size = self._blobs.put_bytes(stored)
        return {
            "digest": digest,
            "blob": blob,
            "size": plain_size,
            "stored_size": stored_size,
            "compressed": compressed,
            "key_version": version,
            "wrapped_key": wrapped,
            "created_at": now_ms(),
        }

    def _zstd(self) -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
        local = self._local
        if not hasattr(local, "pair"):  # zstd contexts are not thread-safe: one per thread
            local.pair = (zstandard.ZstdCompressor(level=self._level), zstandard.ZstdDecompressor())
        return local.pair  # type: ignore[no-any-return]

    def _seal(self, item: tuple[str, bytes]) -> tuple[str, int, bool, int, bytes, bytes]:
        digest, plain = item
        packed = self._zstd()[0].compress(plain)
        compressed = len(packed) < len(plain) * _MIN_SAVING
        body = packed if compressed else plain
        key, version, wrapped = self._keys.new_data_key()
        nonce = os.urandom(_NONCE)
        stored = nonce + AESGCM(key).encrypt(nonce, body, _aad(digest, compressed))
        return digest, len(plain), compressed, version, wrapped, stored

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
        stored = self._blobs.read_bytes(row.blob)
        key = self._keys.unwrap(row.key_version, row.wrapped_key)
        try:
            body = AESGCM(key).decrypt(
                stored[:_NONCE], stored[_NONCE:], _aad(ref.digest, row.compressed)
            )
        except InvalidTag:
            raise TamperedArtifact(
                f"chunk {ref.digest} failed authentication: it was modified"
            ) from None
        plain = (
            self._zstd()[1].decompress(body, max_output_size=row.size) if row.compressed else body
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


def _b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()
