"""A local store never shows a partial blob, and a failed write leaves nothing behind.

An object store cannot show a partial object at all (one PUT, or a multipart
upload that appears only when completed), so these tests watch the local
folder, where atomicity is our own doing: temp file, fsync, rename.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from mlplane.blobs import BlobStore, hash_file
from mlplane.blobs.store import CHUNK
from mlplane.errors import Unavailable
from tests.blobs.helpers import b3, object_path


@pytest.fixture
def local_store(tmp_path: Path) -> BlobStore:
    return BlobStore((tmp_path / "store").as_uri())


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_reader_never_sees_a_partial_blob(local_store: BlobStore) -> None:
    # Several big blobs streamed slowly; the copy into place is what a
    # non-atomic store would expose, so blobs are large enough for it to take
    # a while, and the watcher polls as fast as it can.
    blobs = [[os.urandom(CHUNK) for _ in range(24)] for _ in range(3)]
    expected = {}
    for parts in blobs:
        data = b"".join(parts)
        expected[Path(object_path(local_store, b3(data)))] = len(data)
    objects = Path(local_store.root, "objects")
    done = threading.Event()
    failures: list[BaseException] = []

    def slow(parts: list[bytes]) -> Iterator[bytes]:
        for part in parts:
            time.sleep(0.005)
            yield part

    def writer() -> None:
        try:
            for parts in blobs:
                local_store.put_stream(slow(parts))
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen: dict[Path, int] = {}
    polls = 0
    try:
        while not done.is_set():
            polls += 1
            for entry in _files(objects):
                try:
                    size = entry.stat().st_size
                except FileNotFoundError:
                    continue
                assert entry in expected, f"unexpected file under objects/: {entry}"
                assert size == expected[entry], f"partial blob visible: {entry} ({size} bytes)"
                seen[entry] = size
    finally:
        thread.join()
    assert not failures, failures

    assert polls > 10, "the watcher did not get to run while blobs were written"
    assert set(seen) <= set(expected)
    assert set(_files(objects)) == set(expected)
    for path in expected:
        assert hash_file(path)[0] == "b3:" + path.parent.name + path.name
    assert _files(Path(local_store.root, "tmp")) == []


def test_a_stream_that_fails_halfway_leaves_nothing(local_store: BlobStore) -> None:
    hasher = blake3.blake3()

    def crashing() -> Iterator[bytes]:
        for i in range(8):
            if i == 4:
                raise ConnectionResetError("client went away")
            chunk = os.urandom(CHUNK)
            hasher.update(chunk)
            yield chunk

    with pytest.raises(ConnectionResetError):
        local_store.put_stream(crashing())

    assert _files(Path(local_store.root, "objects")) == []
    assert _files(Path(local_store.root, "tmp")) == [], "the spool file must be removed"
    assert not local_store.exists("b3:" + hasher.hexdigest())


def test_a_copy_that_fails_halfway_leaves_nothing(
    local_store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(4 * CHUNK))

    def disk_fills_up(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        with open(source, "rb") as inp, open(target, "wb") as out:
            out.write(inp.read(CHUNK))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", disk_fills_up)
    with pytest.raises(Unavailable):
        local_store.put_file(src)
    with pytest.raises(Unavailable):
        local_store.put_stream(iter([src.read_bytes()]))

    assert _files(Path(local_store.root, "objects")) == []
    assert _files(Path(local_store.root, "tmp")) == [], "the partial copy must be removed"
    assert not local_store.exists(hash_file(src)[0])
