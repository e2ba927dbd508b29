"""The chunk store: de-duplicated, compressed, encrypted; no plaintext in the blob store."""

from __future__ import annotations

import base64
import itertools
import os
import random
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mlplane.blobs import BlobStore
from mlplane.blobs.chunks import ChunkStore
from mlplane.blobs.tables import ChunkRow
from mlplane.db import Database, ensure_schema
from mlplane.errors import TamperedArtifact
from mlplane.security.keys import EnvKey, KeyRing, LocalKeyFile

MARKER = b"MLPLANE-SECRET-MARKER-7f3a9c"


@pytest.fixture
def parts(tmp_path: Path) -> tuple[ChunkStore, BlobStore, Database]:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    ensure_schema(db)
    blobs = BlobStore((tmp_path / "blobs").as_uri())
    store = ChunkStore(
        blobs, db, KeyRing(LocalKeyFile(tmp_path / "master.key")), avg_size=64 * 1024
    )
    yield store, blobs, db
    store.close()
    db.dispose()


def _text_file(path: Path, lines: int, seed: int = 0) -> Path:
    rnd = random.Random(seed)
    with open(path, "wb") as fh:
        for i in range(lines):
            fh.write(b"%d,%s,%0.6f,%s\n" % (i, MARKER, rnd.random(), rnd.choice([b"a", b"b"]) * 20))
    return path


def test_round_trip_of_text_random_and_empty_files(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, _, _ = parts
    files = {
        "text": _text_file(tmp_path / "t.csv", 50_000),
        "random": tmp_path / "r.bin",
        "empty": tmp_path / "e.bin",
        "tiny": tmp_path / "s.bin",
    }
    files["random"].write_bytes(os.urandom(3_000_000))
    files["empty"].write_bytes(b"")
    files["tiny"].write_bytes(b"x")
    for name, src in files.items():
        refs, stats = store.put_file(src)
        assert stats.bytes_in == src.stat().st_size
        out = tmp_path / f"out-{name}"
        store.get_file(refs, out)
        assert out.read_bytes() == src.read_bytes(), name


def test_no_plaintext_reaches_the_blob_store(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, blobs, _ = parts
    store.put_file(_text_file(tmp_path / "t.csv", 20_000))  # compressible
    noisy = tmp_path / "n.bin"
    noisy.write_bytes(os.urandom(500_000) + MARKER + os.urandom(500_000))  # incompressible
    store.put_file(noisy)
    scanned = 0
    for path in Path(blobs.root).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            scanned += len(data)
            assert MARKER not in data, path
            assert MARKER[:12] not in data
    assert scanned > 500_000


def test_identical_content_is_stored_once_and_an_append_stores_little(
    parts, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    store, _, _ = parts
    src = _text_file(tmp_path / "t.csv", 100_000)
    refs, first = store.put_file(src)
    assert first.new_chunks == first.chunks > 10
    _, again = store.put_file(src)
    assert again.new_chunks == 0 and again.bytes_stored == 0
    with open(src, "ab") as fh:  # append 1% more rows
        for i in range(1000):
            fh.write(b"%d,appended,%d\n" % (i, i * 7))
    refs2, appended = store.put_file(src)
    assert appended.new_chunks <= 2
    assert appended.bytes_stored < 0.05 * first.bytes_stored
    assert refs2[: len(refs) - 1] == refs[:-1]


def test_compression_is_skipped_when_it_does_not_help(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, _, db = parts
    rnd = tmp_path / "r.bin"
    rnd.write_bytes(os.urandom(200_000))
    _, random_stats = store.put_file(rnd)
    _, text_stats = store.put_file(_text_file(tmp_path / "t.csv", 10_000))
    assert random_stats.bytes_stored <= random_stats.bytes_in + 28 * random_stats.new_chunks
    assert text_stats.bytes_stored < text_stats.bytes_in / 2
    with db.read() as s:
        flags = {r.compressed for r in s.query(ChunkRow)}
    assert flags == {True, False}


def test_small_files_share_pack_blobs_and_each_reads_back_alone(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, blobs, db = parts
    rnd = random.Random(3)
    paths = []
    for i in range(300):
        body = b"%d," % i + bytes(rnd.choice(b"abc,\n") for _ in range(rnd.randint(50, 4000)))
        if i % 10 == 0:  # starts like a JPEG: stored as is, without a zstd attempt
            body = b"\xff\xd8\xff\xe0" + body
        p = tmp_path / "in" / f"f{i}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(body)
        paths.append(p)
    put = store.put_files(paths)
    stored = [p for p in Path(blobs.root, "objects").rglob("*") if p.is_file()]
    assert len(stored) <= 300 // 50  # a few packs, not one blob per file
    with db.read() as s:
        rows = {r.digest: r for r in s.execute(select(*ChunkRow.__table__.columns))}
    assert all(r.pack_offset is not None for r in rows.values())
    for i, (refs, _) in enumerate(put):
        assert b"".join(store.iter_bytes(refs)) == paths[i].read_bytes()
        if i % 10 == 0:
            assert not rows[refs[0].digest].compressed
    # Offsets and sizes tile each pack exactly.
    by_pack: dict[str, list[tuple[int, int]]] = {}
    for r in rows.values():
        by_pack.setdefault(r.blob, []).append((r.pack_offset, r.stored_size))
    for blob, spans in by_pack.items():
        spans.sort()
        assert spans[0][0] == 0
        assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(spans))
        assert spans[-1][0] + spans[-1][1] == len(blobs.read_bytes(blob))


def test_a_truncated_pack_is_detected(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, blobs, _ = parts
    paths = []
    for i in range(5):
        p = tmp_path / f"s{i}.txt"
        p.write_bytes(os.urandom(2000))
        paths.append(p)
    put = store.put_files(paths)
    (pack,) = [p for p in Path(blobs.root, "objects").rglob("*") if p.is_file()]
    pack.write_bytes(pack.read_bytes()[:-10])
    with pytest.raises(TamperedArtifact):
        list(store.iter_bytes(put[-1][0]))
    assert b"".join(store.iter_bytes(put[0][0])) == paths[0].read_bytes()


def test_modified_blob_is_detected(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, blobs, _ = parts
    src = tmp_path / "r.bin"
    src.write_bytes(os.urandom(100_000))
    refs, _ = store.put_file(src)
    victim = next(p for p in Path(blobs.root, "objects").rglob("*") if p.is_file())
    data = bytearray(victim.read_bytes())
    data[40] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(TamperedArtifact, match="modified"):
        store.get_file(refs, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_shredded_chunks_are_unreadable(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, _, db = parts
    src = tmp_path / "r.bin"
    src.write_bytes(os.urandom(10_000))
    refs, _ = store.put_file(src)
    with db.write() as s:
        s.execute(update(ChunkRow).values(wrapped_key=None))
    with pytest.raises(TamperedArtifact, match="shredded"):
        list(store.iter_bytes(refs))


def test_a_crash_mid_put_leaves_no_dangling_rows_and_a_rerun_completes(
    parts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    store, blobs, db = parts
    src = _text_file(tmp_path / "t.csv", 60_000)
    real = blobs.put_bytes
    calls = {"n": 0}

    def failing(data: bytes, **kw: bool) -> tuple[str, int]:
        calls["n"] += 1
        if calls["n"] == 1:  # small chunks share a pack: the first put is the whole file
            raise OSError("disk full")
        return real(data, **kw)

    monkeypatch.setattr(blobs, "put_bytes", failing)
    with pytest.raises(OSError):
        store.put_file(src)
    with db.read() as s:
        assert s.query(ChunkRow).count() == 0  # blobs first, rows after: nothing points nowhere
    monkeypatch.setattr(blobs, "put_bytes", real)
    refs, _stats = store.put_file(src)
    store.get_file(refs, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == src.read_bytes()


def test_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "home" / "master.key"
    first = LocalKeyFile(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert LocalKeyFile(path).current() == first.current()
    path.chmod(0o644)
    with pytest.raises(Exception, match="chmod 600"):
        LocalKeyFile(path)


def test_environment_key(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    ring = KeyRing(EnvKey(key))
    data_key, version, wrapped = ring.new_data_key()
    assert ring.unwrap(version, wrapped) == data_key
    with pytest.raises(Exception, match="32 random bytes"):
        EnvKey(base64.b64encode(b"short").decode())
    with pytest.raises(Exception, match="base64"):
        EnvKey("not base64 !!!")
    other = KeyRing(EnvKey(base64.b64encode(os.urandom(32)).decode()))
    with pytest.raises(TamperedArtifact):
        other.unwrap(version, wrapped)
