"""Many files through the chunk store at once, and the hash cache in front of it."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from mlplane.blobs import BlobStore, _seal
from mlplane.blobs import chunks as chunks_mod
from mlplane.blobs.chunks import ChunkStore
from mlplane.blobs.tables import ChunkRow
from mlplane.datasets.storing import cache_keys, store_files
from mlplane.datasets.tables import HashCacheRow
from mlplane.db import Database, ensure_schema
from mlplane.security.keys import KeyRing, LocalKeyFile


@pytest.fixture(params=["sqlite", "postgres"])
def parts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ChunkStore, Database]]:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    if request.param == "postgres":
        from tests.conftest import create_pg_database, drop_pg_database, postgres_available

        if not postgres_available():
            pytest.skip("PostgreSQL is not reachable")
        url = create_pg_database()
    db = Database(url)
    ensure_schema(db)
    blobs = BlobStore((tmp_path / "blobs").as_uri())
    store = ChunkStore(
        blobs, db, KeyRing(LocalKeyFile(tmp_path / "master.key")), avg_size=64 * 1024
    )
    yield store, db
    store.close()
    db.dispose()
    if request.param == "postgres":
        drop_pg_database(url)


def _files(root: Path, n: int) -> list[Path]:
    """Small text and binary files, an empty one, duplicates, and two that get cut."""
    rnd = random.Random(3)
    root.mkdir(parents=True)
    out = []
    for i in range(n):
        path = root / f"f{i:04d}.{'json' if i % 2 else 'bin'}"
        if i % 2:
            path.write_text(f'{{"id": {i}, "label": "{"ab" * rnd.randint(1, 400)}"}}\n')
        else:
            path.write_bytes(os.urandom(rnd.randint(1, 9000)))
        out.append(path)
    (root / "empty").write_bytes(b"")
    (root / "dup-a").write_bytes(b"the same bytes" * 100)
    (root / "dup-b").write_bytes(b"the same bytes" * 100)
    (root / "cut-text").write_bytes(b"".join(b"%d,row,%d\n" % (i, i * 7) for i in range(60_000)))
    (root / "cut-random").write_bytes(os.urandom(700_000))
    return out + [root / n for n in ("empty", "dup-a", "dup-b", "cut-text", "cut-random")]


def _rows(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(ChunkRow)) or 0)


def test_many_files_share_batches_and_read_back(
    parts: tuple[ChunkStore, Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, db = parts
    paths = _files(tmp_path / "src", 300)
    inserts = {"n": 0}
    real = store._record

    def counting(rows):  # type: ignore[no-untyped-def]
        inserts["n"] += 1
        return real(rows)

    monkeypatch.setattr(store, "_record", counting)
    seen: list[int] = []
    results = store.put_files(paths, progress=seen.append)

    assert inserts["n"] == 1, "305 files fit one batch: one insert, not one per file"
    assert sum(seen) == sum(p.stat().st_size for p in paths)
    for path, (refs, stats) in zip(paths, results, strict=True):
        assert stats.bytes_in == path.stat().st_size == sum(r.size for r in refs)
        store.get_file(refs, tmp_path / "out" / path.name)
        assert (tmp_path / "out" / path.name).read_bytes() == path.read_bytes(), path.name
    by_name = {p.name: r for p, r in zip(paths, results, strict=True)}
    assert by_name["empty"] == ([], by_name["empty"][1]) and by_name["empty"][1].chunks == 0
    assert len(by_name["cut-text"][0]) > 1 and len(by_name["cut-random"][0]) > 1
    # Identical content is one chunk: the first file that has it counts it as new.
    assert by_name["dup-a"][0] == by_name["dup-b"][0]
    assert (by_name["dup-a"][1].new_chunks, by_name["dup-b"][1].new_chunks) == (1, 0)
    unique = {r.digest for refs, _ in results for r in refs}
    assert _rows(db) == len(unique) == sum(st.new_chunks for _, st in results)


def test_put_files_cuts_exactly_as_put_file(
    parts: tuple[ChunkStore, Database], tmp_path: Path
) -> None:
    store, _ = parts
    paths = _files(tmp_path / "src", 20)
    together = [refs for refs, _ in store.put_files(paths)]
    alone = [store.put_file(p)[0] for p in paths]  # all known now: nothing new is written
    assert together == alone


def test_batches_are_bounded_and_a_failed_write_records_nothing_of_its_batch(
    parts: tuple[ChunkStore, Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, db = parts
    monkeypatch.setattr(chunks_mod, "_BATCH_CHUNKS", 50)
    paths = _files(tmp_path / "src", 200)
    blobs = store._blobs
    real = blobs.put_bytes
    calls = {"n": 0}

    def failing(data: bytes, **kw: bool) -> tuple[str, int]:
        calls["n"] += 1
        if calls["n"] == 3:  # small files: one pack blob per batch of 50
            raise OSError("disk full")
        return real(data, **kw)

    monkeypatch.setattr(blobs, "put_bytes", failing)
    with pytest.raises(OSError, match="disk full"):
        store.put_files(paths)
    recorded = _rows(db)
    # Whole batches before the failing one are recorded, never part of a batch, and
    # every recorded row names a blob that exists.
    assert 0 < recorded < 200 and recorded % 50 == 0
    with db.read() as s:
        assert all(blobs.exists(b) for b in s.scalars(select(ChunkRow.blob)))
    monkeypatch.setattr(blobs, "put_bytes", real)
    results = store.put_files(paths)
    assert sum(st.new_chunks for _, st in results) == _rows(db) - recorded
    for path, (refs, _) in zip(paths, results, strict=True):
        assert b"".join(store.iter_bytes(refs)) == path.read_bytes()


def test_a_probe_skips_zstd_on_large_incompressible_chunks() -> None:
    import zstandard

    zc = zstandard.ZstdCompressor(level=1)
    assert not _seal.worth_trying(zc, os.urandom(1 << 20))
    assert _seal.worth_trying(zc, b"".join(b"%d,abc,%d\n" % (i, i) for i in range(99_999)))
    assert _seal.worth_trying(zc, os.urandom(1000))  # small: always tried
    # Compressed pages around a compressible one (a Parquet dictionary page): tried.
    text = b"".join(b"%d,abc,%d\n" % (i, i) for i in range(20_000))[:200_000]
    assert _seal.worth_trying(zc, os.urandom(600_000) + text + os.urandom(200_000))


def test_reused_chunks_are_marked_for_garbage_collection(
    parts: tuple[ChunkStore, Database], tmp_path: Path
) -> None:
    store, db = parts
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(200_000))
    refs, _ = store.put_file(src)
    digests = {r.digest for r in refs}
    with db.write() as s:
        s.execute(update(ChunkRow).values(seen_at=None))
    assert store.reuse(digests | {"b3:" + "0" * 64}) == digests
    with db.read() as s:
        marks = list(s.scalars(select(ChunkRow.seen_at)))
    assert marks and all(m is not None for m in marks)
    with db.write() as s:
        s.execute(update(ChunkRow).values(seen_at=None))
    _, again = store.put_file(src)  # a put that finds the chunks stored marks them too
    assert again.new_chunks == 0
    with db.read() as s:
        assert all(m is not None for m in s.scalars(select(ChunkRow.seen_at)))


def test_hash_cache_skips_unchanged_files_and_updates_changed_ones(
    parts: tuple[ChunkStore, Database], tmp_path: Path
) -> None:
    store, db = parts
    paths = _files(tmp_path / "src", 40)
    files = [(p.name, p) for p in paths]
    first = store_files(db, store, files)
    assert first.rehashed == len(files)
    again = store_files(db, store, files)
    assert again.rehashed == 0 and again.bytes_in == 0
    assert [f.digest for f in again.files] == [f.digest for f in first.files]

    paths[3].write_bytes(b"changed")
    changed = store_files(db, store, files)
    assert changed.rehashed == 1
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(HashCacheRow)) == len(files)
        size = s.scalar(
            select(HashCacheRow.size).where(HashCacheRow.path == cache_keys([paths[3]])[0])
        )
    assert size == len(b"changed")

    # Chunks removed by garbage collection: the files that used them are read again.
    gone = {r.digest for r in first.files[0].refs}
    with db.write() as s:
        s.execute(ChunkRow.__table__.delete().where(ChunkRow.digest.in_(gone)))
    healed = store_files(db, store, files)
    assert healed.rehashed >= 1
    assert b"".join(store.iter_bytes(healed.files[0].refs)) == paths[0].read_bytes()


def test_cache_keys_are_resolved_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    (real / "sub").mkdir(parents=True)
    (real / "sub" / "f.txt").write_text("x")
    (tmp_path / "alias").symlink_to(real)
    (tmp_path / "link.txt").symlink_to(real / "sub" / "f.txt")
    monkeypatch.chdir(tmp_path)
    paths = [
        Path("alias/sub/f.txt"),
        tmp_path / "alias" / "sub" / ".." / "sub" / "f.txt",
        tmp_path / "link.txt",
        real / "sub" / "f.txt",
    ]
    assert cache_keys(paths) == [str(p.resolve()) for p in paths]


def test_many_small_files_are_sealed_in_worker_processes(
    parts: tuple[ChunkStore, Database], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlplane.blobs import _small

    store, db = parts
    paths = _files(tmp_path / "src", 400)
    grown = tmp_path / "src" / "grows"
    grown.write_bytes(b"short")
    paths.append(grown)
    sizes = [p.stat().st_size for p in paths]
    # Grown past one chunk since it was listed: the worker hands it back, and the
    # threaded path cuts it.
    grown.write_bytes(b"".join(b"%d,grown,%d\n" % (i, i) for i in range(40_000)))
    jobs = {"n": 0}
    real_jobs = _small._jobs

    def counted(*args: object, **kw: object) -> object:
        for job in real_jobs(*args, **kw):  # type: ignore[arg-type]
            jobs["n"] += 1
            yield job

    monkeypatch.setattr(_small, "PROCESSES_FROM", 100)
    monkeypatch.setattr(_small, "_JOB_FILES", 64)
    monkeypatch.setattr(_small, "_BATCH", 150)  # several batches, one in flight
    monkeypatch.setattr(_small, "_jobs", counted)
    seen: list[int] = []
    results = store.put_files(paths, sizes=sizes, progress=seen.append)
    assert jobs["n"] >= 6  # the small files went to the workers
    assert sum(seen) == sum(p.stat().st_size for p in paths)
    for path, (refs, st) in zip(paths, results, strict=True):
        assert b"".join(store.iter_bytes(refs)) == path.read_bytes()
        assert st.bytes_in == path.stat().st_size
    by_name = dict(zip((p.name for p in paths), results, strict=True))
    assert by_name["empty"][0] == [] and len(by_name["grows"][0]) > 1
    assert by_name["dup-a"][0] == by_name["dup-b"][0]  # one chunk, stored once
    assert by_name["dup-a"][1].new_chunks + by_name["dup-b"][1].new_chunks == 1
    assert sum(st.new_chunks for _, st in results) == _rows(db)
    with db.read() as s:  # small chunks share pack blobs
        blobs = s.scalar(select(func.count(func.distinct(ChunkRow.blob))))
    assert blobs is not None and blobs < _rows(db) / 10
    # The same files again: everything is found, nothing new is written.
    again = store.put_files(paths, sizes=[p.stat().st_size for p in paths])
    assert sum(st.new_chunks for _, st in again) == 0
    assert [r for r, _ in again] == [r for r, _ in results]


def test_the_sealer_module_names_digests_as_the_blob_store_does() -> None:
    from mlplane.blobs.store import PREFIX

    assert _seal.PREFIX == PREFIX
