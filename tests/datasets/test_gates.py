"""Adding versions through quality contracts and PII policies, on the real service."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mlplane.blobs.chunks import ChunkRef
from mlplane.blobs.tables import ChunkRow
from mlplane.config import load_settings
from mlplane.datasets.tables import DatasetVersionRow
from mlplane.errors import InvalidInput, QualityGateFailed
from mlplane.security import local_admin
from mlplane.security.tables import AuditEventRow
from mlplane.services import Services
from mlplane.tracking.entities import RunInput

ME = local_admin("tester")
EMAILS = [f"person{i}@example.org" for i in range(50)]
CARD = "4111 1111 1111 1111"  # Luhn-valid test number


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = Services.from_settings(load_settings(home=tmp_path / "home"))
    yield s
    s.close()


def _customers(path: Path, rows: int = 200, *, bad_amount: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "email", "amount", "country", "note"])
        for i in range(rows):
            amount = -5 if i == bad_amount else i % 100
            note = f"card {CARD}" if i == 7 else "ok"
            w.writerow([i, EMAILS[i % len(EMAILS)], amount, ("US", "DE", "FR")[i % 3], note])
    return path


CONTRACT = """
columns:
  id: {not_null: true, unique: true}
  amount: {between: {min: 0, max: 1000}}
  country: {in_set: [US, DE, FR]}
table:
  row_count: {min: 10}
"""


def _chunk_count(svc: Services) -> int:
    with svc.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(ChunkRow)) or 0)


def _all_plaintext(svc: Services) -> bytes:
    """Every stored chunk, decrypted: what the store holds, whatever the encryption."""
    with svc.db.read() as s:
        rows = s.execute(select(ChunkRow.digest, ChunkRow.size)).all()
    return b"".join(b"".join(svc.chunks.iter_bytes([ChunkRef(d, n)])) for d, n in rows)


def test_contract_passes_and_results_are_stored(svc: Services, tmp_path: Path) -> None:
    src = _customers(tmp_path / "c.csv")
    result = svc.data.add(ME, "customers", src, contract=CONTRACT, pii="mask")
    q = result.version.quality
    assert q is not None and q.passed
    assert {(r.kind, r.column) for r in q.results} >= {
        ("not_null", "id"),
        ("unique", "id"),
        ("between", "amount"),
        ("in_set", "country"),
        ("row_count", None),
    }
    # The stored report survives a fresh read.
    again = svc.data.get(ME, "customers@1")
    assert again.quality is not None and len(again.quality.results) == len(q.results)


def test_failed_contract_refuses_the_version_and_stores_nothing(
    svc: Services, tmp_path: Path
) -> None:
    src = _customers(tmp_path / "c.csv", bad_amount=42)
    with pytest.raises(QualityGateFailed) as err:
        svc.data.add(ME, "customers", src, contract=CONTRACT, pii="mask")
    text = str(err.value)
    assert "between" in text and "amount" in text and "42" in text  # names the row
    assert _chunk_count(svc) == 0
    with svc.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DatasetVersionRow)) == 0


def test_warning_lets_the_version_through(svc: Services, tmp_path: Path) -> None:
    src = _customers(tmp_path / "c.csv", bad_amount=3)
    contract = {"columns": {"amount": {"between": {"min": 0, "max": 1000, "severity": "warn"}}}}
    v = svc.data.add(ME, "customers", src, contract=contract, pii="mask").version
    assert v.quality is not None and v.quality.passed
    assert [r.failing for r in v.quality.warnings] == [1]


def test_bad_contract_fails_before_any_data_is_written(svc: Services, tmp_path: Path) -> None:
    src = _customers(tmp_path / "c.csv")
    with pytest.raises(InvalidInput, match="nonexistent"):
        svc.data.add(ME, "customers", src, contract={"columns": {"nonexistent": {"unique": True}}})
    with pytest.raises(InvalidInput, match="is_positive"):
        svc.data.add(ME, "customers", src, contract={"columns": {"id": {"is_positive": True}}})
    assert _chunk_count(svc) == 0


def test_masking_never_stores_the_raw_values(svc: Services, tmp_path: Path) -> None:
    src = _customers(tmp_path / "c.csv")
    v = svc.data.add(ME, "customers", src, pii="mask").version
    assert not v.pii_unhandled
    stored = _all_plaintext(svc)
    for email in EMAILS:
        assert email.encode() not in stored
    assert CARD.encode() not in stored and b"4111111111111111" not in stored
    report = v.files[0].pii
    assert report is not None
    email_col = next(c for c in report.columns if c.column == "email")
    assert email_col.kinds.get("email") == 200 and email_col.action == "mask"
    # The report gives counts and positions, never values.
    assert "example.org" not in report.to_json()
    out = svc.data.materialize(ME, "customers@1", tmp_path / "out")
    text = (out / "c.csv").read_text()
    assert "example.org" not in text and "[EMAIL]" in text


def test_hash_keeps_joins_and_drop_removes_the_column(svc: Services, tmp_path: Path) -> None:
    a = _customers(tmp_path / "a" / "c.csv")
    b = _customers(tmp_path / "b" / "c.csv", rows=60)
    va = svc.data.add(ME, "a", a, pii={"email": "hash", "note": "drop"}).version
    vb = svc.data.add(ME, "b", b, pii={"email": "hash", "note": "drop"}).version
    out_a = svc.data.materialize(ME, va.ref, tmp_path / "oa")
    out_b = svc.data.materialize(ME, vb.ref, tmp_path / "ob")
    rows_a = list(csv.DictReader((out_a / "c.csv").read_text().splitlines()))
    rows_b = list(csv.DictReader((out_b / "c.csv").read_text().splitlines()))
    assert "note" not in rows_a[0]
    assert rows_a[0]["email"] != EMAILS[0] and "@" not in rows_a[0]["email"]
    # Same value, same token, in both datasets: the join still works.
    assert rows_a[5]["email"] == rows_b[5]["email"]
    assert rows_a[5]["email"] != rows_a[6]["email"]


def test_block_refuses(svc: Services, tmp_path: Path) -> None:
    src = _customers(tmp_path / "c.csv")
    with pytest.raises(QualityGateFailed, match="email"):
        svc.data.add(ME, "customers", src, pii="block")
    assert _chunk_count(svc) == 0


def test_unhandled_pii_blocks_training_use_unless_allowed(svc: Services, tmp_path: Path) -> None:
    src = _customers(tmp_path / "c.csv")
    v = svc.data.add(ME, "customers", src).version  # no policy: detected and flagged
    assert v.pii_unhandled
    exp = svc.tracking.create_experiment(ME, "e")
    run = svc.tracking.create_run(ME, exp)
    inp = RunInput(
        kind="dataset",
        name="customers",
        version="1",
        digest=v.digest,
        source="mlplane-data:default/customers@1",
    )
    with pytest.raises(QualityGateFailed, match="PII"):
        svc.tracking.log_inputs(ME, run.info.run_id, [inp])
    svc.tracking.log_inputs(ME, run.info.run_id, [replace(inp, allow_pii=True)])
    with svc.db.read() as s:
        actions = set(s.scalars(select(AuditEventRow.action)))
    assert "dataset.pii.allow_use" in actions
    lineage = svc.dataset_lineage(ME, "customers@1", project="default")
    assert [r.unhandled_pii for r in lineage.runs] == [True]


def test_policy_and_contract_are_inherited(svc: Services, tmp_path: Path) -> None:
    src = _customers(tmp_path / "c.csv")
    svc.data.add(ME, "customers", src, contract=CONTRACT, pii="mask")
    _customers(src, rows=300)
    v2 = svc.data.add(ME, "customers", src).version  # neither given: both inherited
    assert v2.version == 2 and not v2.pii_unhandled
    assert v2.quality is not None and v2.quality.passed
    assert v2.pii_policy is not None
    _customers(src, rows=300, bad_amount=1)
    with pytest.raises(QualityGateFailed):
        svc.data.add(ME, "customers", src)


def test_unchanged_re_add_reads_nothing(svc: Services, tmp_path: Path) -> None:
    src = _customers(tmp_path / "c.csv")
    svc.data.add(ME, "customers", src, pii="mask")
    again = svc.data.add(ME, "customers", src)
    assert not again.created and again.files_rehashed == 0 and again.bytes_in == 0


def test_malformed_table_is_named_and_makes_no_version(svc: Services, tmp_path: Path) -> None:
    from mlplane.gc import collect_garbage

    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "good.txt").write_text("fine\n")
    (folder / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InvalidInput, match=r"bad\.parquet"):
        svc.data.add(ME, "broken", folder)
    with svc.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DatasetVersionRow)) == 0
    # Without a contract or a rewriting policy the bytes were stored while the table was
    # read: unreferenced chunks, which garbage collection removes.
    collect_garbage(svc, ME, grace_s=0)
    assert _chunk_count(svc) == 0
    with pytest.raises(InvalidInput, match=r"bad\.parquet"):
        svc.data.add(ME, "broken", folder, contract={"table": {"row_count": {"min": 1}}})
    assert _chunk_count(svc) == 0  # under a contract, nothing is stored before the pass


def test_interrupted_add_leaves_no_version_and_a_rerun_resumes(
    svc: Services, tmp_path: Path
) -> None:
    import os

    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(4):
        (folder / f"part{i}.bin").write_bytes(os.urandom(3_000_000))
    seen = 0

    def interrupt(n: int) -> None:
        nonlocal seen
        seen += n
        if seen > 6_000_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        svc.data.add(ME, "big", folder, progress=interrupt)
    with svc.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DatasetVersionRow)) == 0
    stored_before = _chunk_count(svc)
    assert stored_before > 0  # some chunks made it: garbage until a version lists them
    result = svc.data.add(ME, "big", folder)
    assert result.created and result.bytes_in == 12_000_000
    assert result.bytes_stored < 12_000_000 - 3_000_000  # the stored chunks were reused
    out = svc.data.materialize(ME, "big@1", tmp_path / "out")
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in folder.iterdir())
