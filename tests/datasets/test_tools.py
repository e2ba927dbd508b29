"""diff, sample, SQL, lineage and garbage collection over real versions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select, update

import mlplane
from mlplane.blobs.tables import ChunkRow
from mlplane.config import load_settings
from mlplane.datasets.diff import diff_versions, psi
from mlplane.datasets.sampling import keep_mask
from mlplane.errors import InvalidInput, NotFound
from mlplane.gc import collect_garbage
from mlplane.security import local_admin
from mlplane.services import Services

ME = local_admin("tester")


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = Services.from_settings(load_settings(home=tmp_path / "home"))
    yield s
    s.close()


def _table(path: Path, n: int, *, shift: float = 0.0, extra: bool = False, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    cols = {
        "id": np.arange(n),
        "amount": rng.normal(50 + shift, 10, n),
        "kind": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1] if not shift else [0.1, 0.3, 0.6]),
    }
    if extra:
        cols["score"] = rng.random(n)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), path)
    return path


# -- diff ----------------------------------------------------------------------------------------


def test_diff_shows_schema_rows_and_shift(svc: Services, tmp_path: Path) -> None:
    src = tmp_path / "d" / "t.parquet"
    _table(src, 5000)
    svc.data.add(ME, "t", src.parent)
    (src.parent / "notes.txt").write_text("hello")
    _table(src, 6000, shift=30.0, extra=True, seed=1)
    svc.data.add(ME, "t", src.parent)
    d = diff_versions(svc.data.get(ME, "t@1"), svc.data.get(ME, "t@2"))
    assert d.added == ["notes.txt"] and d.changed == ["t.parquet"] and not d.removed
    (table,) = d.tables
    assert (table.rows_before, table.rows_after) == (5000, 6000)
    by = {c.column: c for c in table.columns}
    assert by["score"].change == "added"
    assert by["amount"].change == "stats" and by["amount"].drifted
    assert by["amount"].shifts["mean"][1] > by["amount"].shifts["mean"][0] + 20
    assert by["kind"].drifted  # category mix flipped


def test_diff_of_the_same_distribution_does_not_drift(svc: Services, tmp_path: Path) -> None:
    src = tmp_path / "d" / "t.parquet"
    _table(src, 20_000, seed=1)
    svc.data.add(ME, "t", src.parent)
    _table(src, 20_000, seed=2)
    svc.data.add(ME, "t", src.parent)
    d = diff_versions(svc.data.get(ME, "t@1"), svc.data.get(ME, "t@2"))
    assert not any(c.drifted for c in d.tables[0].columns)


def test_psi_rules() -> None:
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == pytest.approx(0.0)
    assert psi(np.array([0.9, 0.1]), np.array([0.1, 0.9])) > 1.0


# -- sample --------------------------------------------------------------------------------------


def test_sample_is_reproducible_and_records_its_source(svc: Services, tmp_path: Path) -> None:
    src = _table(tmp_path / "d" / "t.parquet", 100_000)
    svc.data.add(ME, "t", src)
    one = svc.data.sample(ME, "t@1", fraction=0.01, seed=1)
    rows = one.version.files[0].profile.rows  # type: ignore[union-attr]
    assert 800 < rows < 1200
    assert one.version.name == "t-sample" and one.version.derived_from == "t@1"
    same = svc.data.sample(ME, "t@1", fraction=0.01, seed=1)
    assert not same.created and same.version.digest == one.version.digest
    other = svc.data.sample(ME, "t@1", fraction=0.01, seed=2)
    assert other.created and other.version.digest != one.version.digest
    assert svc.data.derived_versions(ME, "t@1", project="default") == ["t-sample@1", "t-sample@2"]
    with pytest.raises(InvalidInput, match="fraction"):
        svc.data.sample(ME, "t@1", fraction=1.5)


def test_keep_mask_does_not_depend_on_batching() -> None:
    whole = keep_mask(7, "f.csv", 0, 10_000, 0.1)
    parts = np.concatenate([keep_mask(7, "f.csv", s, 1000, 0.1) for s in range(0, 10_000, 1000)])
    assert (whole == parts).all()
    bigger = keep_mask(7, "f.csv", 0, 10_000, 0.3)
    assert (bigger | ~whole).all()  # a larger fraction keeps a superset


# -- SQL, lineage, leakage through the SDK -------------------------------------------------------


def test_sql_over_versions(tmp_path: Path) -> None:
    df = pd.DataFrame({"id": range(1000), "kind": ["a", "b"] * 500, "amount": range(1000)})
    mlplane.data.add("sales", df)
    out = mlplane.data.sql("SELECT kind, sum(amount) AS total FROM 'sales@1' GROUP BY kind")
    got = dict(zip(out.column("kind").to_pylist(), out.column("total").to_pylist(), strict=True))
    assert got == {"a": sum(range(0, 1000, 2)), "b": sum(range(1, 1000, 2))}
    joined = mlplane.data.sql(
        "SELECT count(*) AS n FROM 'sales@latest' a JOIN 'sales@1' b USING (id)"
    )
    assert joined.column("n").to_pylist() == [1000]
    with pytest.raises(InvalidInput, match="names no dataset version"):
        mlplane.data.sql("SELECT 1")
    with pytest.raises(NotFound, match="versions: 1"):
        mlplane.data.sql("SELECT * FROM 'sales@9'")
    with pytest.raises(InvalidInput, match="query failed"):
        mlplane.data.sql("SELECT nope FROM 'sales@1'")


def test_lineage_through_the_sdk() -> None:
    df = pd.DataFrame({"x": range(100), "y": [i % 2 for i in range(100)]})
    v = mlplane.data.add("clicks", df)
    with mlplane.start_run(capture_context=False) as run:
        mlplane.log_input(v, context="training")
    lin = mlplane.data.lineage("clicks@1")
    assert [(r.run_id, r.context) for r in lin.runs] == [(run.run_id, "training")]
    assert lin.derived_from is None and lin.derived == []


def test_leakage_through_the_sdk() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 2, n)
    train = pd.DataFrame({"id": range(n), "f": rng.random(n), "leak": y, "label": y})
    test = train.iloc[:500].copy()
    mlplane.data.add("tr", train)
    mlplane.data.add("te", test)
    report = mlplane.data.leakage("tr@1", "te@1", key="id", target="label")
    assert report.overlap.in_both == 500
    assert [f.column for f in report.features if f.suspicious] == ["leak"]


# -- garbage collection --------------------------------------------------------------------------


def _chunks(svc: Services) -> int:
    with svc.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(ChunkRow)) or 0)


def test_gc_removes_only_unreferenced_chunks_past_the_grace(svc: Services, tmp_path: Path) -> None:
    keep = tmp_path / "keep.bin"
    keep.write_bytes(np.random.default_rng(1).bytes(3_000_000))
    svc.data.add(ME, "kept", keep)
    # Chunks stored by an add that never recorded its version (interrupted): garbage.
    orphan = tmp_path / "orphan.bin"
    orphan.write_bytes(np.random.default_rng(2).bytes(2_000_000))
    refs, _ = svc.chunks.put_file(orphan)
    total = _chunks(svc)
    young = collect_garbage(svc, ME, grace_s=3600)
    assert young.chunks_deleted == 0 and young.kept_young == len({r.digest for r in refs})
    dry = collect_garbage(svc, ME, grace_s=0, dry_run=True)
    assert dry.chunks_deleted == young.kept_young and _chunks(svc) == total
    with svc.db.write() as s:  # age the orphans past the grace period
        s.execute(update(ChunkRow).values(created_at=int(time.time() * 1000) - 10_000))
    report = collect_garbage(svc, ME, grace_s=5)
    assert report.chunks_deleted == len({r.digest for r in refs})
    assert report.chunk_bytes_freed > 0 and _chunks(svc) == total - report.chunks_deleted
    out = svc.data.materialize(ME, "kept@1", tmp_path / "out")
    assert (out / "keep.bin").read_bytes() == keep.read_bytes()


def test_gc_deletes_a_pack_with_its_last_chunk(svc: Services, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)

    def small_files(folder: Path, n: int) -> list[Path]:
        folder.mkdir()
        for i in range(n):
            (folder / f"f{i:02d}.bin").write_bytes(rng.bytes(3000))
        return sorted(folder.iterdir())

    def packs() -> set[str]:
        with svc.db.read() as s:
            return set(s.scalars(select(ChunkRow.blob).where(ChunkRow.pack_offset.is_not(None))))

    svc.chunks.put_files(small_files(tmp_path / "a", 40))  # stored, listed by no version
    (shared,) = packs()
    kept = tmp_path / "kept"
    kept.mkdir()
    for i in range(20):  # a version lists half of that pack's chunks
        (kept / f"f{i:02d}.bin").write_bytes((tmp_path / "a" / f"f{i:02d}.bin").read_bytes())
    svc.data.add(ME, "half", kept)
    svc.chunks.put_files(small_files(tmp_path / "b", 10))  # a pack of garbage only
    (garbage,) = packs() - {shared}
    with svc.db.write() as s:
        s.execute(update(ChunkRow).values(created_at=0, seen_at=None))
    report = collect_garbage(svc, ME, grace_s=1)
    assert report.chunks_deleted == 30
    assert svc.blobs.exists(shared)  # still holds 20 live chunks
    assert not svc.blobs.exists(garbage)
    out = svc.data.materialize(ME, "half@1", tmp_path / "out")
    assert (out / "f07.bin").read_bytes() == (kept / "f07.bin").read_bytes()


def test_gc_removes_orphan_blobs(svc: Services, tmp_path: Path) -> None:
    digest, _ = svc.blobs.put_bytes(b"nobody points at me")
    assert svc.blobs.exists(digest)
    assert collect_garbage(svc, ME, grace_s=3600).blobs_deleted == 0
    time.sleep(1.1)
    assert collect_garbage(svc, ME, grace_s=1).blobs_deleted == 1
    assert not svc.blobs.exists(digest)
