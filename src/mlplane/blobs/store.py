"""A content-addressed blob store on any fsspec filesystem.

Objects are named by their BLAKE3 digest (``b3:<hex>``) and laid out as
``<root>/objects/<2 hex>/<rest>``. A blob becomes visible only complete:
on a local folder it is written to a temporary name and renamed into place
(atomic on POSIX); on an object store it is one PUT of a finished local file
(object stores never expose a partial object). So no reader ever sees a
partial blob, and a crash mid-write leaves at most an unreferenced temp file.
Reads and writes stream in fixed-size chunks: a large artifact is never
loaded into memory whole.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import blake3
import fsspec
from fsspec.implementations.local import LocalFileSystem

from mlplane.errors import InvalidInput, NotFound, TamperedArtifact, Unavailable

CHUNK = 1024 * 1024
PREFIX = "b3:"
# Bytes per request to a remote store: the read-ahead of an open blob and the
# smallest part of an upload.
REMOTE_BLOCK = 8 * CHUNK
S3_MAX_PARTS = 10_000
_DIGEST = re.compile(r"b3:[0-9a-f]{64}")
# Temporary names for put_bytes: a random tag (other machines sharing the folder), the
# process id (a forked worker shares the tag and the count) and a counter (atomic under
# the GIL): unique without drawing random bytes for every blob.
_SPOOL_TAG = os.urandom(6).hex()
_SPOOL_SEQ = itertools.count()


def _hex(digest: str) -> str:
    # A pattern, not int(…, 16): that also takes "0x", "_", signs and blanks,
    # and upper case would name a second key for the same content.
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise InvalidInput(
            f"not a blob digest: {digest!r} (expected 'b3:' and 64 lower-case hex digits)"
        )
    return digest[len(PREFIX) :]


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """Digest and size of a local file, streamed."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK * 8):
            hasher.update(chunk)
            size += len(chunk)
    return PREFIX + hasher.hexdigest(), size


class BlobStore:
    """Content-addressed blobs under an fsspec URL (``file://…``, ``s3://bucket/prefix``…)."""

    def __init__(self, url: str, **storage_options: object) -> None:
        self.url = url.rstrip("/")
        self.fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)
        protocols = {self.fs.protocol} if isinstance(self.fs.protocol, str) else self.fs.protocol
        self.is_s3 = bool({"s3", "s3a"} & set(protocols))
        self._ensured: set[str] = set()
        self._folders: set[str] = set()  # local object folders known to exist
        if self.is_local:
            Path(self.root, "objects").mkdir(parents=True, exist_ok=True)
            Path(self.root, "tmp").mkdir(parents=True, exist_ok=True)

    def _key(self, digest: str) -> str:
        h = _hex(digest)
        return f"{self.root}/objects/{h[:2]}/{h[2:]}"

    def _put_options(self, size: int) -> dict[str, int]:
        if not self.is_s3:
            return {}
        # s3fs by default reads a file under 100 MiB into memory whole and sends
        # larger ones ten 50 MiB parts at a time. Two parts at a time keep an
        # upload to a few tens of MiB whatever its size; parts grow past
        # REMOTE_BLOCK only to stay within S3's limit on their number.
        return {"chunksize": max(REMOTE_BLOCK, -(-size // S3_MAX_PARTS)), "max_concurrency": 2}

    def exists(self, digest: str) -> bool:
        try:
            return bool(self.fs.exists(self._key(digest)))
        except OSError as exc:
            raise Unavailable(f"blob store {self.url} unreachable: {exc}") from exc

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a local file; returns ``(digest, size)``. Storing twice is free."""
        digest, size = hash_file(path)
        if self.exists(digest):
            return digest, size
        key = self._key(digest)
        try:
            if self.is_local:
                tmp = Path(self.root, "tmp", uuid.uuid4().hex)
                try:
                    shutil.copyfile(path, tmp)
                    with open(tmp, "rb+") as fh:
                        os.fsync(fh.fileno())
                    Path(key).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, key)
                finally:
                    # A failed copy (disk full…) must not keep its partial temp file.
                    tmp.unlink(missing_ok=True)
            else:
                self.fs.put_file(str(path), key, **self._put_options(size))
        except OSError as exc:
            raise Unavailable(f"could not write to blob store {self.url}: {exc}") from exc
        return digest, size

    def put_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store a stream of bytes, spooled to a local temp file while hashing."""
        spool_dir = Path(self.root, "tmp") if self.is_local else None
        fd, tmp_name = tempfile.mkstemp(dir=spool_dir, prefix="spool-")
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
            return self.put_file(tmp_name)
        finally:
            Path(tmp_name).unlink(missing_ok=True)

    def put_bytes(self, data: bytes, *, new: bool = False) -> tuple[str, int]:
        """Store bytes already in memory (a chunk): no spool file, one write or one PUT.

        ``new=True`` tells that no blob can have this content yet (fresh ciphertext under
        a fresh key): the existence check, a stat or a HEAD request, is skipped.
        """
        hexdigest = blake3.blake3(data).hexdigest()
        digest = PREFIX + hexdigest
        if not new and self.exists(digest):
            return digest, len(data)
        key = f"{self.root}/objects/{hexdigest[:2]}/{hexdigest[2:]}"
        try:
            if self.is_local:
                self._write_local(data, key)
            else:
                self.fs.pipe_file(key, data)
        except OSError as exc:
            raise Unavailable(f"could not write to blob store {self.url}: {exc}") from exc
        return digest, len(data)

    def _write_local(self, data: bytes, key: str) -> None:
        # Atomic, not durable: the rename means no reader and no crashed process ever
        # sees a partial blob under its name, but there is no fsync, which would cost a
        # disk flush per blob (milliseconds: 100,000 small files would take minutes).
        # After a power loss, blobs written in the last seconds can come back empty or
        # missing; a chunk whose row survived then fails when read (not found, or failed
        # authentication: reported, never returned wrong). The metadata database makes
        # the same trade (SQLite WAL with synchronous=NORMAL). Whole-file puts
        # (put_file) do fsync: an artifact is one blob, so the flush is paid once.
        folder, name = key.rsplit("/", 1)
        # Temporary files go to tmp/<2 hex>/ like their objects: file creations in one
        # folder are serialised by the kernel, so a single tmp/ would let only one writer
        # thread create at a time.
        spool = f"{self.root}/tmp/{folder[-2:]}"
        for path in (folder, spool):
            if path not in self._folders:  # one mkdir per folder, not per blob
                os.makedirs(path, exist_ok=True)
                self._folders.add(path)
        tmp = f"{spool}/{name[:16]}.{_SPOOL_TAG}.{os.getpid()}.{next(_SPOOL_SEQ)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            try:
                os.replace(tmp, key)
            except FileNotFoundError:  # the folder was removed meanwhile (garbage collection)
                os.makedirs(folder, exist_ok=True)
                os.replace(tmp, key)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def open(self, digest: str) -> BinaryIO:
        """Open a blob for streaming reads."""
        try:
            # fsspec's default read-ahead (50 MiB on s3fs) would hold most of a blob.
            return self.fs.open(self._key(digest), "rb", block_size=REMOTE_BLOCK)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store {self.url}") from None
        except OSError as exc:
            raise Unavailable(f"blob store {self.url} unreachable: {exc}") from exc

    def iter_chunks(self, digest: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        with self.open(digest) as fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def get_file(self, digest: str, dest: str | os.PathLike[str], *, verify: bool = True) -> None:
        """Write a blob to ``dest`` atomically, checking its digest on the way."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        hasher = blake3.blake3()
        try:
            with open(tmp, "wb") as out:
                for chunk in self.iter_chunks(digest):
                    hasher.update(chunk)
                    out.write(chunk)
            if verify and PREFIX + hasher.hexdigest() != digest:
                raise TamperedArtifact(
                    f"blob {digest} does not match its content: the store was modified"
                )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def read_bytes(self, digest: str) -> bytes:
        return b"".join(self.iter_chunks(digest))

    def read_range(self, digest: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a blob from ``offset`` (a chunk inside a pack): one ranged
        read, a seek on a local folder or a ranged GET on an object store."""
        key = self._key(digest)
        try:
            if self.is_local:
                with open(key, "rb") as fh:
                    fh.seek(offset)
                    data = fh.read(length)
            else:
                data = self.fs.cat_file(key, start=offset, end=offset + length)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the store") from None
        except OSError as exc:
            raise Unavailable(f"blob store {self.url} unreachable: {exc}") from exc
        if len(data) != length:
            raise TamperedArtifact(f"blob {digest} is shorter than its chunk index says")
        return data

    def delete(self, digest: str) -> None:
        try:
            self.fs.rm_file(self._key(digest))
        except FileNotFoundError:
            pass

    def iter_blobs(self) -> Iterator[tuple[str, float]]:
        """Every stored blob as (digest, modification time in seconds), for garbage collection."""
        base = f"{self.root}/objects"
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise Unavailable(f"blob store {self.url} unreachable: {exc}") from exc
        for key, info in found.items():
            rel = key[len(base) :].strip("/").replace("/", "")
            if len(rel) != 64:
                continue
            mtime = info.get("mtime") or info.get("LastModified") or info.get("created") or 0
            if hasattr(mtime, "timestamp"):
                mtime = mtime.timestamp()
            yield PREFIX + rel, float(mtime)
