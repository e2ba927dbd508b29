"""Dataset versions through the real service on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from mlplane.config import load_settings
from mlplane.errors import InvalidInput, NotFound
from mlplane.security import local_admin
from mlplane.security.tables import AuditEventRow
from mlplane.services import Services

ME = local_admin("tester")


@pytest.fixture(params=["sqlite", "postgres"])
def svc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    if request.param == "postgres":
        from tests.conftest import create_pg_database, drop_pg_database, postgres_available

        if not postgres_available():
            pytest.skip("PostgreSQL is not reachable")
        url = create_pg_database()
        s = Services.from_settings(load_settings(home=tmp_path / "home", db_url=url))
        yield s
        s.close()
        drop_pg_database(url)
    else:
        s = Services.from_settings(load_settings(home=tmp_path / "home"))
        yield s
        s.close()


def _folder(root: Path, rows: int = 20_000) -> Path:
    rnd = random.Random(1)
    (root / "raw").mkdir(parents=True)
    with open(root / "train.csv", "w") as fh:
        fh.write("id,amount,label\n")
        for i in range(rows):
            fh.write(f"{i},{rnd.random() * 100:.2f},{rnd.randint(0, 1)}\n")
    (root / "raw" / "blob.bin").write_bytes(os.urandom(300_000))
    (root / "README.md").write_text("transactions\n")
    return root


def _same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)


def test_add_get_and_materialize(svc: Services, tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    first = svc.data.add(ME, "transactions", src)
    v = first.version
    assert first.created and v.version == 1 and v.tags == ["latest"]
    assert v.file_count == 3 and {f.path for f in v.files} == {
        "train.csv",
        "raw/blob.bin",
        "README.md",
    }
    assert v.size == sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    assert svc.data.get(ME, "transactions@latest").digest == v.digest
    out = svc.data.materialize(ME, "transactions@1", tmp_path / "out")
    assert _same_tree(src, out)


def test_unchanged_re_add_creates_nothing_and_reads_nothing(svc: Services, tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    svc.data.add(ME, "t", src)
    again = svc.data.add(ME, "t", src)
    assert not again.created and again.version.version == 1
    assert again.files_rehashed == 0 and again.bytes_in == 0


def test_an_unchanged_folder_is_known_by_one_tree_cache_row(svc: Services, tmp_path: Path) -> None:
    from mlplane.datasets.tables import HashCacheRow, TreeCacheRow

    src = _folder(tmp_path / "src", rows=100)
    svc.data.add(ME, "t", src)
    with svc.db.write() as s:  # without the per-file cache, only the tree row can tell
        s.query(HashCacheRow).delete()
        assert s.query(TreeCacheRow).count() == 1
    again = svc.data.add(ME, "t", src)
    assert not again.created and again.files_rehashed == 0 and again.bytes_in == 0
    # A file touched (same bytes, new mtime) no longer matches the tree row: the files are
    # read again, found identical, and still no version is made.
    st = (src / "README.md").stat()
    os.utime(src / "README.md", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    touched = svc.data.add(ME, "t", src)
    assert not touched.created and touched.files_rehashed == 3
    # Edited: a new version, and the tree row now stands for it.
    (src / "README.md").write_text("edited\n")
    edited = svc.data.add(ME, "t", src)
    assert edited.created and edited.version.version == 2 and edited.files_rehashed == 1
    assert not svc.data.add(ME, "t", src).created
    with svc.db.read() as s:
        row = s.query(TreeCacheRow).one()
        assert row.version_digest == edited.version.digest
    # A file added to the folder changes the listing.
    (src / "new.txt").write_text("new\n")
    assert svc.data.add(ME, "t", src).version.version == 3


def test_the_tree_cache_keeps_apart_sources_and_pii_policies(svc: Services, tmp_path: Path) -> None:
    from mlplane.datasets.tables import TreeCacheRow

    src = tmp_path / "src"
    src.mkdir()
    (src / "people.csv").write_text("id,email\n1,ann@example.com\n2,bob@example.com\n")
    masked = svc.data.add(ME, "people", src, pii="mask")
    plain = svc.data.add(ME, "raw", src, pii="allow")
    assert masked.version.digest != plain.version.digest
    with svc.db.read() as s:
        assert s.query(TreeCacheRow).count() == 2
    # Each dataset's unchanged re-add (its policy inherited) finds its own row.
    for name, first in (("people", masked), ("raw", plain)):
        again = svc.data.add(ME, name, src)
        assert not again.created and again.bytes_in == 0
        assert again.version.digest == first.version.digest


def test_versions_are_immutable_and_an_append_stores_little(svc: Services, tmp_path: Path) -> None:
    src = _folder(tmp_path / "src", rows=1_000_000)  # ~15 MB: many 1 MiB chunks
    first = svc.data.add(ME, "t", src)
    before = (src / "train.csv").read_bytes()
    with open(src / "train.csv", "a") as fh:  # 1% more rows
        for i in range(10_000):
            fh.write(f"{1_000_000 + i},1.00,0\n")
    second = svc.data.add(ME, "t", src)
    assert second.created and second.version.version == 2 and second.files_rehashed == 1
    # Only the chunks at the end change: at most two chunks' worth is stored again.
    assert second.bytes_stored < 0.15 * first.bytes_stored
    old = svc.data.materialize(ME, "t@1", tmp_path / "old")
    assert (old / "train.csv").read_bytes() == before
    assert [v.version for v in svc.data.versions(ME, "t")] == [2, 1]
    assert svc.data.get(ME, "t").version == 2


def test_tags_and_helpful_errors(svc: Services, tmp_path: Path) -> None:
    src = _folder(tmp_path / "src", rows=100)
    svc.data.add(ME, "t", src)
    (src / "README.md").write_text("changed\n")
    svc.data.add(ME, "t", src)
    svc.data.tag(ME, "t@1", "prod")
    assert svc.data.get(ME, "t@prod").version == 1
    with pytest.raises(NotFound, match="versions: 1, 2; tags: latest, prod"):
        svc.data.get(ME, "t@7")
    with pytest.raises(NotFound, match="no dataset named"):
        svc.data.get(ME, "nope")
    with pytest.raises(InvalidInput, match="dataset name"):
        svc.data.add(ME, "../evil", src)
    with pytest.raises(InvalidInput, match="does not exist"):
        svc.data.add(ME, "t", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="no files"):
        svc.data.add(ME, "t", tmp_path / "empty")
    with pytest.raises(InvalidInput, match="latest"):
        svc.data.tag(ME, "t@2", "latest")
    assert [d.name for d in svc.data.list_datasets(ME)] == ["t"]


def test_adds_and_downloads_are_audited(svc: Services, tmp_path: Path) -> None:
    src = _folder(tmp_path / "src", rows=10)
    svc.data.add(ME, "t", src)
    svc.data.materialize(ME, "t@1", tmp_path / "out")
    with svc.db.read() as s:
        actions = list(
            s.scalars(select(AuditEventRow.action).where(AuditEventRow.actor == "tester"))
        )
    assert "dataset.version.create" in actions and "dataset.download" in actions


def test_an_interrupted_add_leaves_no_version_and_a_rerun_resumes(
    svc: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _folder(tmp_path / "src", rows=50_000)
    store = svc.chunks
    real = store.put_files

    def dies_after_the_first_file(paths, **kw):  # type: ignore[no-untyped-def]
        real(paths[:1], **kw)  # its chunks are stored, then the add is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "put_files", dies_after_the_first_file)
    with pytest.raises(KeyboardInterrupt):
        svc.data.add(ME, "t", src)
    with pytest.raises(NotFound):
        svc.data.get(ME, "t")
    monkeypatch.setattr(store, "put_files", real)
    result = svc.data.add(ME, "t", src)
    assert result.created and result.version.version == 1
    assert _same_tree(src, svc.data.materialize(ME, "t", tmp_path / "out"))


def test_table_files_carry_a_profile(svc: Services, tmp_path: Path) -> None:
    src = _folder(tmp_path / "src", rows=5000)
    v = svc.data.add(ME, "t", src).version
    prof = next(f.profile for f in v.files if f.path == "train.csv")
    assert prof is not None and prof.rows == 5000
    assert {c.name for c in prof.columns} == {"id", "amount", "label"}
    assert prof.column("label").distinct == 2 and prof.column("id").max == 4999
    assert next(f.profile for f in v.files if f.path == "README.md") is None
    assert svc.data.get(ME, "t@1").files[2].profile == prof  # stored, read back the same


def test_a_malformed_table_file_is_named(svc: Services, tmp_path: Path) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    (src / "broken.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(InvalidInput, match=r"broken\.csv is not a readable CSV file: .*Row #3"):
        svc.data.add(ME, "bad", src)
    with pytest.raises(NotFound):
        svc.data.get(ME, "bad")


def test_an_add_can_answer_with_its_table_files_only(svc: Services, tmp_path: Path) -> None:
    src = _folder(tmp_path / "src", rows=50)
    first = svc.data.add(ME, "t", src, tables_only=True)
    assert first.created and first.version.file_count == 3
    assert [f.path for f in first.version.files] == ["train.csv"]
    assert first.version.files[0].profile is not None
    again = svc.data.add(ME, "t", src, tables_only=True)
    assert not again.created and [f.path for f in again.version.files] == ["train.csv"]
    assert len(svc.data.get(ME, "t@1").files) == 3  # the version itself lists them all
