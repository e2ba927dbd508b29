"""The table pass over files: text read dictionary-encoded, reported and stored as declared."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from mlplane.datasets.contracts import load_contract
from mlplane.datasets.passes import PassResult
from mlplane.datasets.pii import parse_policy
from mlplane.datasets.pipeline import scan_tables
from mlplane.datasets.profile import profile_batches

KEY = b"k" * 32
_FORMATS = {"csv": "csv", "parquet": "parquet", "jsonl": "json"}


def _table(n: int = 3000) -> pa.Table:
    return pa.table(
        {
            "id": list(range(n)),
            "city": [["paris", "lyon", "nice"][i % 3] for i in range(n)],
            "note": [f"mail u{i}@example.com" if i % 500 == 7 else f"order {i}" for i in range(n)],
            "amount": [i / 4 for i in range(n)],
        }
    )


def _write(table: pa.Table, path: Path) -> None:
    if path.suffix == ".csv":
        pacsv.write_csv(table, path)
    elif path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=1000)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))


def _pass(tmp_path: Path, name: str, policy: str | None = None, **kw: object) -> PassResult:
    path = tmp_path / name
    return scan_tables(
        [(name, path)],
        policy=parse_policy(policy),
        hmac_key=KEY,
        workdir=tmp_path / "work",
        contract=kw.get("contract"),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_text_columns_profile_and_scan_as_the_file_declares(tmp_path: Path, suffix: str) -> None:
    table = _table()
    _write(table, tmp_path / f"t.{suffix}")
    result = _pass(tmp_path, f"t.{suffix}").tables[f"t.{suffix}"]
    declared = pads.dataset(str(tmp_path / f"t.{suffix}"), format=_FORMATS[suffix])
    assert [c.type for c in result.profile.columns] == [str(t) for t in declared.schema.types]
    direct = profile_batches(declared.schema, declared.to_batches())
    for got, want in zip(result.profile.columns, direct.columns, strict=True):
        assert (got.count, got.nulls, got.distinct, got.min, got.max, got.top) == (
            want.count,
            want.nulls,
            want.distinct,
            want.min,
            want.max,
            want.top,
        )
    (note,) = result.pii.columns
    assert note.column == "note" and note.kinds == {"email": 6}
    assert note.rows == 6
    assert note.examples == [(f"t.{suffix}", i) for i in range(7, 3000, 500)][:5]
    assert not result.replaced


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_masked_copies_keep_the_declared_types(tmp_path: Path, suffix: str) -> None:
    table = _table(1200)
    _write(table, tmp_path / f"t.{suffix}")
    result = _pass(tmp_path, f"t.{suffix}", "mask").tables[f"t.{suffix}"]
    assert result.replaced
    stored = pads.dataset(str(result.stored_path), format=_FORMATS[suffix])
    original = pads.dataset(str(tmp_path / f"t.{suffix}"), format=_FORMATS[suffix])
    assert stored.schema.types == original.schema.types
    rows = stored.to_table().to_pylist()
    assert [r["city"] for r in rows] == table["city"].to_pylist()
    assert rows[7]["note"] == "mail [EMAIL]" and rows[8]["note"] == "order 8"


def test_contract_checks_text_columns_read_as_dictionaries(tmp_path: Path) -> None:
    _write(_table(), tmp_path / "a.csv")
    _write(_table(), tmp_path / "b.parquet")
    contract = load_contract(
        {
            "columns": {
                "city": {"in_set": ["paris", "lyon"], "type": "string"},
                "note": {"regex": "order \\d+", "unique": True},
            }
        }
    )
    for name in ("a.csv", "b.parquet"):
        report = _pass(tmp_path, name, contract=contract).quality
        assert report is not None
        by_kind = {r.kind: r for r in report.results}
        assert by_kind["type"].passed
        assert by_kind["in_set"].failing == 1000 and "'nice'" in by_kind["in_set"].observed
        assert by_kind["regex"].failing == 6
        assert by_kind["unique"].passed
