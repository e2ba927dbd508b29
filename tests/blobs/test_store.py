"""The blob store's contract, run against a local folder and against S3 (SeaweedFS)."""

from __future__ import annotations

import os
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import blake3
import pytest

from mlplane.blobs import BlobStore, hash_file
from mlplane.blobs.store import CHUNK, REMOTE_BLOCK
from mlplane.errors import InvalidInput, NotFound, TamperedArtifact
from tests.blobs.helpers import b3, object_path, stored_objects

# Sizes around the read chunk, the remote read-ahead block and a multipart
# upload (at least two parts).
SIZES = [0, 1, CHUNK - 1, CHUNK + 1, REMOTE_BLOCK + 1, 2 * REMOTE_BLOCK + 1]


def payload(size: int, seed: bytes = b"") -> bytes:
    """Deterministic, incompressible-looking bytes (cheaper than os.urandom for big sizes)."""
    return blake3.blake3(seed + size.to_bytes(8, "big")).digest(length=size)


def test_put_bytes_returns_blake3_digest_and_size(store: BlobStore) -> None:
    data = b"hello, blobs"
    digest, size = store.put_bytes(data)
    assert digest == b3(data)
    assert size == len(data)
    assert store.exists(digest)
    assert stored_objects(store) == [object_path(store, digest)]


@pytest.mark.parametrize("size", SIZES)
def test_put_file_round_trips(store: BlobStore, tmp_path: Path, size: int) -> None:
    data = payload(size)
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    digest, stored = store.put_file(src)

    assert (digest, stored) == (b3(data), size)
    dest = tmp_path / "out" / "nested" / "model.bin"
    store.get_file(digest, dest)
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"], "no .part left"
    assert store.read_bytes(digest) == data


def test_put_stream_takes_a_generator_of_chunks(store: BlobStore) -> None:
    parts = [b"", b"a" * 10, os.urandom(CHUNK + 7), b"", b"tail"]

    def chunks() -> Iterator[bytes]:
        yield from parts

    digest, size = store.put_stream(chunks())

    data = b"".join(parts)
    assert (digest, size) == (b3(data), len(data))
    assert store.read_bytes(digest) == data


def test_same_content_is_stored_once(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(3000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    results = {
        store.put_bytes(data),
        store.put_bytes(data),
        store.put_file(src),
        store.put_file(str(src)),
        store.put_stream(iter([data[:1000], data[1000:]])),
    }

    assert results == {(b3(data), len(data))}
    assert stored_objects(store) == [object_path(store, b3(data))]


def test_exists_and_delete(store: BlobStore) -> None:
    digest, _ = store.put_bytes(b"to be deleted")
    other, _ = store.put_bytes(b"to be kept")
    assert store.exists(digest)

    store.delete(digest)

    assert not store.exists(digest)
    with pytest.raises(NotFound):
        store.read_bytes(digest)
    store.delete(digest)  # deleting again is not an error
    assert store.read_bytes(other) == b"to be kept"
    assert store.put_bytes(b"to be deleted") == (digest, len(b"to be deleted"))
    assert store.exists(digest)


def test_get_file_detects_a_tampered_object(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 100)
    digest, _ = store.put_bytes(data)
    # Same size, one byte flipped: only the digest check can tell.
    tampered = bytearray(data)
    tampered[CHUNK + 3] ^= 0xFF
    store.fs.pipe_file(object_path(store, digest), bytes(tampered))

    dest = tmp_path / "out" / "model.bin"
    with pytest.raises(TamperedArtifact):
        store.get_file(digest, dest)

    assert list(dest.parent.iterdir()) == [], "neither the file nor its .part may be left"
    store.get_file(digest, dest, verify=False)
    assert dest.read_bytes() == bytes(tampered)


def test_open_streams(store: BlobStore) -> None:
    data = os.urandom(3 * CHUNK + 5)
    digest, _ = store.put_bytes(data)

    with store.open(digest) as fh:
        head = fh.read(10)
        fh.seek(CHUNK)
        middle = fh.read(20)
        rest = fh.read()
    assert head == data[:10]
    assert middle == data[CHUNK : CHUNK + 20]
    assert rest == data[CHUNK + 20 :]


def test_iter_chunks_streams_in_bounded_chunks(store: BlobStore) -> None:
    data = os.urandom(10_000)
    digest, _ = store.put_bytes(data)

    chunks = list(store.iter_chunks(digest, chunk_size=3000))

    assert [len(c) for c in chunks] == [3000, 3000, 3000, 1000]
    assert b"".join(chunks) == data


def test_missing_digest_is_not_found(store: BlobStore, tmp_path: Path) -> None:
    missing = b3(b"never stored")
    assert not store.exists(missing)
    with pytest.raises(NotFound):
        store.open(missing)
    with pytest.raises(NotFound):
        store.read_bytes(missing)
    with pytest.raises(NotFound):
        list(store.iter_chunks(missing))
    dest = tmp_path / "out" / "x.bin"
    with pytest.raises(NotFound):
        store.get_file(missing, dest)
    assert list(dest.parent.iterdir()) == []


HEX = "0123456789abcdef" * 4
INVALID_DIGESTS = [
    "",
    "b3:",
    HEX,
    "sha256:" + HEX,
    "b3:" + HEX[:-1],
    "b3:" + HEX + "0",
    "b3:" + "g" + HEX[1:],
    "B3:" + HEX,
    "b3:" + HEX.upper(),  # a second spelling would name a second key
    "b3:0x" + HEX[2:],
    "b3:" + HEX[:10] + "_" + HEX[11:],
    "b3:-" + HEX[1:],
    "b3: " + HEX[1:],
    "b3:" + HEX + "\n",
    "b3:../../" + HEX[8:],
]


@pytest.mark.parametrize("digest", INVALID_DIGESTS)
def test_invalid_digest_is_invalid_input(store: BlobStore, tmp_path: Path, digest: str) -> None:
    with pytest.raises(InvalidInput):
        store.exists(digest)
    with pytest.raises(InvalidInput):
        store.open(digest)
    with pytest.raises(InvalidInput):
        store.read_bytes(digest)
    with pytest.raises(InvalidInput):
        store.get_file(digest, tmp_path / "x.bin")
    with pytest.raises(InvalidInput):
        store.delete(digest)


def test_failed_stream_stores_nothing(
    store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where a remote store spools
    first = os.urandom(CHUNK)

    def crashing() -> Iterator[bytes]:
        yield first
        yield first
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        store.put_stream(crashing())

    assert stored_objects(store) == []
    assert not store.exists(b3(first * 2))
    assert list(spool.iterdir()) == []
    if store.is_local:
        assert list(Path(store.root, "tmp").iterdir()) == []


LARGE = 96 * CHUNK
T = TypeVar("T")


@pytest.mark.slow
def test_large_blob_streams_in_bounded_memory(store: BlobStore, tmp_path: Path) -> None:
    """A blob much larger than the memory it may use goes in and out.

    tracemalloc counts Python allocations, which is where a blob read whole
    would sit (bytes buffers in our code, s3fs and botocore), and unlike RSS it
    does not depend on the allocator or on what the test process did before.
    """
    hasher = blake3.blake3()

    def chunks() -> Iterator[bytes]:
        for _ in range(LARGE // CHUNK):
            chunk = os.urandom(CHUNK)
            hasher.update(chunk)
            yield chunk

    peaks: dict[str, int] = {}

    def measured(step: str, action: Callable[[], T]) -> T:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = action()
        peaks[step] = tracemalloc.get_traced_memory()[1] - before
        return result

    dest = tmp_path / "out.bin"
    tracemalloc.start()
    try:
        digest, size = measured("put_stream", lambda: store.put_stream(chunks()))
        measured("get_file", lambda: store.get_file(digest, dest))
        streamed = measured("iter_chunks", lambda: sum(map(len, store.iter_chunks(digest))))
    finally:
        tracemalloc.stop()

    assert (digest, size) == ("b3:" + hasher.hexdigest(), LARGE)
    assert hash_file(dest) == (digest, LARGE)
    assert streamed == LARGE
    assert all(peak < LARGE // 2 for peak in peaks.values()), {
        step: f"{peak / CHUNK:.1f} MiB" for step, peak in peaks.items()
    }
