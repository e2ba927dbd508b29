"""Data-quality contracts: parsing, each expectation, streaming and custom SQL."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlplane.datasets.contracts import (
    Contract,
    ContractCheck,
    ContractReport,
    ExpectationResult,
    load_contract,
)
from mlplane.errors import InvalidInput

NOW = datetime(2026, 1, 11, tzinfo=UTC)


def _check(
    contract: Mapping[str, Any] | str,
    files: Mapping[str, pa.Table] | pa.Table,
    *,
    chunk: int = 2,
    now: datetime = NOW,
    sql_files: Sequence[Path] = (),
    sql_format: str = "csv",
) -> ContractReport:
    tables = {"t.csv": files} if isinstance(files, pa.Table) else dict(files)
    schema = next(iter(tables.values())).schema
    check = ContractCheck(load_contract(contract), schema, now=now)
    for name, table in tables.items():
        for batch in table.to_batches(max_chunksize=chunk):
            check.update(batch, file=name)
    return check.finish(sql_files, sql_format=sql_format)


def _one(contract: Mapping[str, Any], table: pa.Table, **kw: Any) -> ExpectationResult:
    report = _check(contract, table, **kw)
    assert len(report.results) == 1
    return report.results[0]


def _col(name: str, **expectations: Any) -> dict[str, Any]:
    return {"columns": {name: expectations}}


# --- each expectation, passing and failing ----------------------------------------


def test_type_aliases_and_exact_arrow_names() -> None:
    t = pa.table({"x": pa.array([1, 2, 3], pa.int32()), "s": ["a", "b", "c"]})
    assert _one(_col("x", type="int"), t).passed
    assert _one(_col("x", type="number"), t).passed
    assert _one(_col("x", type="int32"), t).passed
    wrong = _one(_col("x", type="int64"), t)
    assert (wrong.passed, wrong.failing, wrong.observed) == (False, 3, "type int32, expected int64")
    bad = _one(_col("s", type="int"), t)
    assert (bad.passed, bad.failing, bad.observed) == (False, 3, "type string, expected int")
    dec = pa.table({"d": pa.array([Decimal("1.50")], pa.decimal128(5, 2))})
    assert _one(_col("d", type="number"), dec).passed
    assert not _one(_col("d", type="float"), dec).passed


def test_not_null_counts_and_locates_nulls() -> None:
    t = pa.table({"x": [1, None, 3, None, None, 6, None, None, None]})
    r = _one(_col("x", not_null=True), t)
    assert (r.passed, r.failing, r.observed) == (False, 6, "6 nulls")
    assert r.examples == [("t.csv", 1), ("t.csv", 3), ("t.csv", 4), ("t.csv", 6), ("t.csv", 7)]
    ok = _one(_col("x", not_null=True), pa.table({"x": [1, 2]}))
    assert (ok.passed, ok.failing, ok.examples) == (True, 0, [])
    assert _check(_col("x", not_null=False), t).results == []


def test_unique_reports_later_occurrences_and_ignores_nulls() -> None:
    t = pa.table({"x": [5, None, 7, 5, None, 7, 5, 8]})
    r = _one(_col("x", unique=True), t, chunk=3)
    assert (r.passed, r.failing, r.observed) == (False, 3, "3 duplicates")
    assert r.examples == [("t.csv", 3), ("t.csv", 5), ("t.csv", 6)]
    assert _one(_col("x", unique=True), pa.table({"x": [1, 2, None, None]})).passed


@pytest.mark.parametrize(
    ("values", "dtype", "failing", "examples"),
    [
        (["a", "b", None, "a", "c", "b"], pa.string(), 2, [3, 5]),
        (["a", "b", "a"], pa.large_string(), 1, [2]),
        ([0.0, -0.0, float("nan"), float("nan"), 1.5], pa.float64(), 2, [1, 3]),
        ([True, False, None, True], pa.bool_(), 1, [3]),
        ([date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 1)], pa.date32(), 1, [2]),
        ([b"x", b"y", b"x"], pa.binary(), 1, [2]),
    ],
)
def test_unique_on_every_kind_of_value(
    values: list[Any], dtype: pa.DataType, failing: int, examples: list[int]
) -> None:
    r = _one(_col("x", unique=True), pa.table({"x": pa.array(values, dtype)}))
    assert r.failing == failing
    assert r.examples == [("t.csv", i) for i in examples]


def test_between_numbers_nan_fails_nulls_do_not() -> None:
    t = pa.table({"x": [1.0, -1.0, None, float("nan"), 12.5, 10.0, 0.0]})
    r = _one(_col("x", between={"min": 0, "max": 10}), t)
    assert (r.passed, r.failing) == (False, 3)
    assert r.examples == [("t.csv", 1), ("t.csv", 3), ("t.csv", 4)]
    assert r.observed == "min -1 < 0, max 12.5 > 10, 1 NaN"
    only_max = _one(_col("x", between={"max": 10}), t)
    assert (only_max.failing, only_max.observed) == (2, "max 12.5 > 10, 1 NaN")
    ints = pa.table({"x": [0, 5, 10, None]})
    ok = _one(_col("x", between=[0, 10]), ints)
    assert (ok.passed, ok.observed) == (True, "min 0, max 10")
    assert _one(_col("x", between=[0.5, None]), ints).failing == 1


def test_between_dates_and_timestamps_from_iso_bounds() -> None:
    days = pa.table({"d": pa.array([date(2023, 12, 31), date(2024, 6, 1), date(2025, 1, 2)])})
    r = _one(_col("d", between={"min": "2024-01-01", "max": date(2024, 12, 31)}), days)
    assert (r.failing, r.examples) == (2, [("t.csv", 0), ("t.csv", 2)])
    assert r.observed == "min 2023-12-31 < 2024-01-01, max 2025-01-02 > 2024-12-31"
    zoned = pa.array(
        [datetime(2024, 1, 1, 0, 30, tzinfo=UTC), datetime(2024, 1, 1, 2, tzinfo=UTC)],
        pa.timestamp("ns", "UTC"),
    )
    # 01:00+02:00 is 23:00 UTC the day before: both rows are after it, none after the max.
    bounds = {"min": "2024-01-01T01:00:00+02:00", "max": "2024-01-01T02:00:00Z"}
    assert _one(_col("z", between=bounds), pa.table({"z": zoned})).passed
    late = _one(_col("z", between={"max": "2024-01-01T01:00:00"}), pa.table({"z": zoned}))
    assert (late.failing, late.examples) == (1, [("t.csv", 1)])


def test_max_null_fraction_over_all_files() -> None:
    files = {
        "a.csv": pa.table({"x": [1, None, 3, 4]}),
        "b.csv": pa.table({"x": [None, 6, 7, 8]}),
    }
    ok = _one(_col("x", max_null_fraction=0.25), files)
    assert (ok.passed, ok.failing, ok.examples) == (True, 0, [])
    r = _one(_col("x", max_null_fraction={"max": 0.2}), files)
    assert (r.passed, r.failing) == (False, 2)
    assert r.examples == [("a.csv", 1), ("b.csv", 0)]
    assert r.observed == "2 of 8 rows null: 25.00% (limit 20.00%)"


def test_in_set_counts_values_outside_and_skips_nulls() -> None:
    t = pa.table({"c": ["US", "UK", None, "DE", "IT", "UK"]})
    r = _one(_col("c", in_set=["US", "DE", "FR"]), t)
    assert (r.passed, r.failing) == (False, 3)
    assert r.examples == [("t.csv", 1), ("t.csv", 4), ("t.csv", 5)]
    assert r.observed == "3 values not in set, e.g. 'UK', 'IT'"
    codes = pa.table({"n": [1, 2, 2, None]})
    assert _one(_col("n", in_set={"values": [1, 2], "severity": "warn"}), codes).passed
    assert _one(_col("n", in_set=[1]), codes).failing == 2


def test_regex_is_a_full_match() -> None:
    t = pa.table({"e": ["a@b", "x", None, "a@b@c", "pre a@b"]})
    r = _one(_col("e", regex="[^@ ]+@[^@ ]+"), t)
    assert (r.failing, r.examples) == (3, [("t.csv", 1), ("t.csv", 3), ("t.csv", 4)])
    assert r.observed == "3 values not matching, e.g. 'x', 'a@b@c', 'pre a@b'"
    assert _one(_col("e", regex={"pattern": "[a-z@ ]+"}), t).passed


def test_freshness_on_timestamps_dates_and_iso_strings() -> None:
    stamps = pa.table({"t": pa.array([datetime(2026, 1, 2), None, datetime(2025, 1, 1)])})
    stale = _one(_col("t", freshness="7d"), stamps)
    assert (stale.passed, stale.failing, stale.examples) == (False, 1, [])
    assert stale.observed == "newest 2026-01-02T00:00:00 is 9d old (limit 7d)"
    assert _one(_col("t", freshness="10d"), stamps).passed
    assert _one(_col("t", freshness="2w"), stamps).passed
    # A naive `now` means UTC too.
    assert _one(_col("t", freshness="36h"), stamps, now=datetime(2026, 1, 3, 11)).passed
    assert not _one(_col("t", freshness="36h"), stamps, now=datetime(2026, 1, 3, 13)).passed
    days = pa.table({"d": pa.array([date(2026, 1, 10), date(2020, 1, 1)])})
    assert _one(_col("d", freshness="1d"), days).passed
    iso = pa.table({"s": ["2026-01-10T00:00:00+05:00", "2026-01-09T22:00:00", None]})
    r = _one(_col("s", freshness="1d"), iso, chunk=3)
    assert r.observed == "newest 2026-01-09T22:00:00 is 1.1d old (limit 1d)"
    plain = _one(_col("s", freshness="2d"), pa.table({"s": ["2026-01-10", "2026-01-01"]}))
    assert plain.passed


def test_freshness_fails_without_values_or_on_text_that_is_not_a_time() -> None:
    empty = _one(_col("t", freshness="7d"), pa.table({"t": pa.array([None], pa.timestamp("s"))}))
    assert (empty.passed, empty.observed) == (False, "no values")
    junk = _one(_col("s", freshness="7d"), pa.table({"s": ["2026-01-10", "soon"]}))
    assert not junk.passed
    assert "not ISO-8601" in junk.observed and "soon" in junk.observed


def test_row_count_bounds() -> None:
    t = pa.table({"x": list(range(5))})
    assert _check({"table": {"row_count": {"min": 5, "max": 5}}}, t).passed
    low = _check({"table": {"row_count": {"min": 6}}}, t).results[0]
    assert (low.passed, low.failing, low.observed) == (False, 1, "5 rows < min 6")
    high = _check({"table": {"row_count": [None, 4]}}, t).results[0]
    assert (high.passed, high.observed) == (False, "5 rows > max 4")


# --- severity, report and serialisation ---------------------------------------------


def test_warn_failures_do_not_fail_the_gate() -> None:
    t = pa.table({"x": [1, None, 1]})
    warn = _check(_col("x", not_null={"severity": "warn"}, unique={"severity": "warn"}), t)
    assert warn.passed and not warn.failures
    assert [r.kind for r in warn.warnings] == ["not_null", "unique"]
    mixed = _check(_col("x", not_null={"severity": "warn"}, unique=True), t)
    assert not mixed.passed
    assert [r.kind for r in mixed.failures] == ["unique"]
    assert [r.kind for r in mixed.warnings] == ["not_null"]


def test_summary_names_failures_counts_and_rows() -> None:
    t = pa.table({"x": [1, None, 1], "y": [1.0, 20.0, 3.0]})
    contract = {
        "columns": {
            "x": {"not_null": {"severity": "warn"}, "unique": True},
            "y": {"between": [0, 5]},
        },
        "table": {"row_count": {"min": 10}},
    }
    text = _check(contract, t, chunk=10).summary()
    assert text.splitlines() == [
        "data-quality contract failed: 3 of 4 expectations with severity error",
        "errors:",
        "  - column 'x' unique: 1 failing row (1 duplicate); e.g. t.csv row 2",
        "  - column 'y' between: 1 failing row (max 20 > 5); e.g. t.csv row 1",
        "  - table row_count: 3 rows < min 10",
        "warnings:",
        "  - column 'x' not_null: 1 failing row (1 null); e.g. t.csv row 1",
    ]
    assert _check(_col("y", not_null=True), t).summary() == (
        "data-quality contract passed (1 expectations)"
    )


def test_report_and_contract_round_trip_through_json() -> None:
    contract = load_contract(
        {
            "columns": {
                "id": {"type": "int", "unique": {"severity": "warn"}},
                "when": {"between": [date(2024, 1, 1), "2025-01-01"], "freshness": "3d"},
                "c": {"in_set": ["US", "DE"]},
                "listed_only": {},
            },
            "table": {"row_count": [1, None], "sql": ["SELECT 1"]},
        }
    )
    again = Contract.from_json(contract.to_json())
    assert again == contract and again.to_json() == contract.to_json()
    assert again.columns == ["id", "when", "c", "listed_only"]
    assert [(e.kind, e.column, e.severity) for e in again.expectations][:2] == [
        ("type", "id", "error"),
        ("unique", "id", "warn"),
    ]
    assert again.expectations[2].args == {"min": "2024-01-01", "max": "2025-01-01"}
    t = pa.table({"x": [1, 1, None]})
    report = _check(_col("x", unique=True, not_null={"severity": "warn"}), t)
    back = ContractReport.from_json(report.to_json())
    assert back == report and back.results[0].examples == [("t.csv", 1)]
    assert json.loads(report.to_json())["results"][0]["failing"] == 1


# --- streaming -------------------------------------------------------------------


def test_row_indices_are_per_file_across_batches() -> None:
    files = {
        "a.csv": pa.table({"x": [1, 2, None, 4, 5]}),
        "b/part.csv": pa.table({"x": [None, 1, 7, None, 2]}),
    }
    report = _check(_col("x", not_null=True, unique=True), files, chunk=2)
    nulls, dups = report.results
    assert nulls.examples == [("a.csv", 2), ("b/part.csv", 0), ("b/part.csv", 3)]
    assert dups.examples == [("b/part.csv", 1), ("b/part.csv", 4)]


def _table_strategy() -> st.SearchStrategy[pa.Table]:
    n = st.shared(st.integers(0, 40), key="n")

    def column(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
        return n.flatmap(lambda k: st.lists(st.none() | values, min_size=k, max_size=k))

    return st.builds(
        lambda i, f, s: pa.table(
            {
                "i": pa.array(i, pa.int64()),
                "f": pa.array(f, pa.float64()),
                "s": pa.array(s, pa.string()),
            }
        ),
        column(st.integers(-3, 3)),
        column(st.sampled_from([0.0, -0.0, 1.5, 99.0, -2.0, float("nan")])),
        column(st.sampled_from(["a", "b", "c@d", "zz", ""])),
    )


STREAM_CONTRACT = {
    "columns": {
        "i": {"not_null": True, "unique": True, "between": [-2, 2], "in_set": [0, 1, 2]},
        "f": {"between": {"min": 0, "max": 50}, "unique": True, "max_null_fraction": 0.1},
        "s": {"regex": "[a-z]+", "in_set": ["a", "b"], "unique": {"severity": "warn"}},
    },
    "table": {"row_count": {"min": 3}},
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=_table_strategy(), cuts=st.lists(st.integers(0, 40), max_size=6))
def test_any_batching_gives_the_same_report(table: pa.Table, cuts: list[int]) -> None:
    whole = ContractCheck(load_contract(STREAM_CONTRACT), table.schema, now=NOW)
    for batch in table.combine_chunks().to_batches():  # one batch, or none
        whole.update(batch, file="t")
    split = ContractCheck(load_contract(STREAM_CONTRACT), table.schema, now=NOW)
    edges = sorted({0, table.num_rows, *(c for c in cuts if c <= table.num_rows)})
    for lo, hi in itertools.pairwise(edges):
        split.update(table.slice(lo, hi - lo).to_batches()[0], file="t")
    assert split.finish() == whole.finish()


def test_retains_no_batches_for_bounded_checks() -> None:
    contract = load_contract(
        _col("x", not_null=True, between=[0, 1], in_set=[0.5], max_null_fraction=0.5)
    )
    schema = pa.schema([("x", pa.float64())])
    check = ContractCheck(contract, schema, now=NOW)
    rng = np.random.default_rng(0)
    before = pa.total_allocated_bytes()
    for i in range(40):
        batch = pa.record_batch([pa.array(rng.uniform(-1, 2, 100_000))], schema=schema)
        check.update(batch, file=f"f{i}.csv")
        del batch
    assert pa.total_allocated_bytes() - before < 100_000 * 8  # less than one batch kept
    report = check.finish()
    assert report.results[1].failing > 1_000_000 and len(report.results[1].examples) == 5


def test_batches_are_cast_to_the_schema_or_rejected() -> None:
    schema = pa.schema([("x", pa.float64())])
    check = ContractCheck(load_contract(_col("x", between=[0, 1])), schema, now=NOW)
    check.update(pa.record_batch({"x": pa.array([1, 2], pa.int64())}), file="a.csv")
    assert check.finish().results[0].examples == [("a.csv", 1)]
    with pytest.raises(InvalidInput, match=r"column 'x' of b.csv has type string"):
        check.update(pa.record_batch({"x": ["nope"]}), file="b.csv")
    with pytest.raises(InvalidInput, match=r"which c.csv does not have; its columns: y"):
        check.update(pa.record_batch({"y": [1.0]}), file="c.csv")


# --- custom SQL ------------------------------------------------------------------


REFUNDS = pa.table(
    {"kind": ["sale", "refund", "refund", "refund"], "amount": [10.0, -5.0, 3.0, 4.0]}
)
SQL_CONTRACT = {
    "table": {
        "sql": [
            {
                "name": "refunds_are_negative",
                "query": "SELECT * FROM data WHERE kind = 'refund' AND amount > 0;",
                "severity": "warn",
            },
            {"name": "no_huge", "query": "SELECT * FROM data WHERE amount > 100 -- comment"},
        ]
    }
}


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_sql_counts_rows_returned_over_all_files(tmp_path: Path, fmt: str) -> None:
    paths = []
    for i, part in enumerate((REFUNDS.slice(0, 2), REFUNDS.slice(2))):
        path = tmp_path / f"part'{i}.{fmt}"  # a quote in the name must not break the view
        if fmt == "csv":
            pacsv.write_csv(part, path)
        elif fmt == "parquet":
            pq.write_table(part, path)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in part.to_pylist()))
        paths.append(path)
    report = _check(SQL_CONTRACT, REFUNDS, sql_files=paths, sql_format=fmt)
    refunds, huge = report.results
    assert (refunds.kind, refunds.name, refunds.failing, refunds.passed) == (
        "sql",
        "refunds_are_negative",
        2,
        False,
    )
    assert refunds.observed == "2 rows returned by refunds_are_negative"
    assert "  - table sql: 2 rows returned by refunds_are_negative" in report.summary()
    assert (huge.passed, huge.failing) == (True, 0)
    assert report.passed


def test_sql_errors_are_contract_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pacsv.write_csv(REFUNDS, path)
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    broken = {"table": {"sql": [{"name": "typo", "query": "SELECT * FROM dta"}]}}
    with pytest.raises(InvalidInput, match=r"contract sql 'typo' does not run: .*dta"):
        _check(broken, REFUNDS, sql_files=[path])
    snoop = {"table": {"sql": [{"name": "snoop", "query": f"SELECT * FROM '{secret}'"}]}}
    with pytest.raises(InvalidInput, match=r"contract sql 'snoop' does not run: .*ermission"):
        _check(snoop, REFUNDS, sql_files=[path])
    with pytest.raises(InvalidInput, match=r"SQL expectations \(refunds_are_negative, no_huge\)"):
        _check(SQL_CONTRACT, REFUNDS)
    with pytest.raises(InvalidInput, match=r"sql_format 'xml' is not one of csv, parquet, json"):
        _check(SQL_CONTRACT, REFUNDS, sql_files=[path], sql_format="xml")


# --- loading ---------------------------------------------------------------------


YAML = """
columns:
  id:
    type: int
    not_null: true
    unique: true
  amount:
    between: {min: 0, max: 10000}
    max_null_fraction: 0.01
  country:
    in_set: [US, DE, NO, on]
  email:
    regex: {pattern: '^[^@]+@[^@]+$', severity: warn}
  created_at:
    freshness: 7d
table:
  row_count: {min: 1000, max: 10000000}
  sql:
    - name: refunds_are_negative
      query: SELECT * FROM data WHERE kind = 'refund' AND amount > 0
      severity: warn
"""


def test_loads_yaml_text_files_dicts_and_contracts(tmp_path: Path) -> None:
    from_text = load_contract(YAML)
    kinds = [(e.kind, e.column) for e in from_text.expectations]
    assert kinds == [
        ("type", "id"),
        ("not_null", "id"),
        ("unique", "id"),
        ("between", "amount"),
        ("max_null_fraction", "amount"),
        ("in_set", "country"),
        ("regex", "email"),
        ("freshness", "created_at"),
        ("row_count", None),
        ("sql", None),
    ]
    # YAML 1.1 would read NO and on as booleans; country codes stay strings.
    assert from_text.expectations[5].args == {"values": ["US", "DE", "NO", "on"]}
    assert from_text.expectations[6].severity == "warn"
    assert from_text.expectations[9].args["name"] == "refunds_are_negative"
    (tmp_path / "c.yaml").write_text(YAML)
    (tmp_path / "c.json").write_text(from_text.to_json())
    assert load_contract(tmp_path / "c.yaml") == from_text
    assert load_contract(str(tmp_path / "c.yaml")) == from_text
    assert load_contract(tmp_path / "c.json") == from_text
    assert load_contract(from_text.to_dict()) == from_text
    assert load_contract(from_text) is from_text


@pytest.mark.parametrize(
    ("contract", "message"),
    [
        ({"colums": {}}, "unknown key 'colums'; allowed: columns, table"),
        (
            {"columns": {"x": {"nullable": True}}},
            "columns.x: unknown expectation 'nullable'; "
            "allowed: type, not_null, unique, between, max_null_fraction, in_set, regex, freshness",
        ),
        ({"table": {"rows": 3}}, "table: unknown expectation 'rows'; allowed: row_count, sql"),
        (
            {"columns": {"x": {"type": "integer"}}},
            "columns.x.type: unknown type 'integer'; use int,",
        ),
        ({"columns": {"x": {"not_null": "yes"}}}, "columns.x.not_null: takes true, false or"),
        (
            {"columns": {"x": {"not_null": {"severity": "fatal"}}}},
            "columns.x.not_null.severity: must be error or warn, not 'fatal'",
        ),
        (
            {"columns": {"x": {"between": {"min": 0, "maximum": 1}}}},
            "columns.x.between: unknown key 'maximum'; allowed: min, max, severity",
        ),
        ({"columns": {"x": {"between": {}}}}, "columns.x.between: needs min, max or both"),
        ({"columns": {"x": {"between": [5, 1]}}}, "columns.x.between: min 5 is greater than max 1"),
        ({"columns": {"x": {"between": [0, "2024-01-01"]}}}, "both be numbers or both be dates"),
        ({"columns": {"x": {"between": {"min": "soon"}}}}, "columns.x.between.min: takes a number"),
        ({"columns": {"x": {"between": 5}}}, "columns.x.between: takes {min: .., max: ..} or a"),
        ({"columns": {"x": {"max_null_fraction": 2}}}, "takes a fraction between 0 and 1, not 2"),
        ({"columns": {"x": {"in_set": []}}}, "columns.x.in_set: takes a non-empty list"),
        ({"columns": {"x": {"in_set": [1, "a"]}}}, "values must all be of one type"),
        ({"columns": {"x": {"regex": "(unclosed"}}}, "columns.x.regex: invalid regular expression"),
        ({"columns": {"x": {"regex": {"patern": "a"}}}}, "unknown key 'patern'; allowed: pattern,"),
        ({"columns": {"x": {"freshness": "7 days"}}}, "columns.x.freshness: takes a duration like"),
        ({"columns": {"x": {"freshness": 7}}}, "columns.x.freshness: takes a duration like 7d"),
        ({"columns": {"x": "not_null"}}, "columns.x: must be a mapping, not str"),
        ({"columns": ["x"]}, "columns: must be a mapping, not list"),
        ({"table": {"row_count": {"min": -1}}}, "table.row_count.min: takes a whole number"),
        ({"table": {"row_count": {"min": 1.5}}}, "table.row_count.min: takes a whole number"),
        ({"table": {"sql": [{"name": "a"}]}}, "table.sql[0]: needs a non-empty query"),
        (
            {"table": {"sql": [{"query": "SELECT 1", "sev": "warn"}]}},
            "table.sql[0]: unknown key 'sev'; allowed: name, query, severity",
        ),
        ({"table": {"sql": {"name": "a", "query": "SELECT 1"}}}, "table.sql: takes a list"),
        (
            {"table": {"sql": [{"name": "a", "query": "SELECT 1"}, {"name": "a", "query": "x"}]}},
            "names must be unique, a is repeated",
        ),
        ("nothing.yaml", "a contract is a mapping with 'columns' and/or 'table', not str"),
        ("columns: [unclosed", "contract is not valid YAML"),
    ],
)
def test_bad_contracts_say_what_to_change(contract: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        load_contract(contract)
    assert message in str(info.value)


def test_missing_contract_file_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"cannot read contract file gone\.yaml"):
        load_contract(tmp_path / "gone.yaml")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InvalidInput, match=r"bad\.json is not valid JSON"):
        load_contract(tmp_path / "bad.json")


# --- schema ----------------------------------------------------------------------


SCHEMA = pa.schema(
    [("a", pa.int64()), ("b", pa.string()), ("c", pa.timestamp("us")), ("d", pa.list_(pa.int8()))]
)


def test_validate_schema_names_missing_columns() -> None:
    contract = load_contract({"columns": {"a": {"not_null": True}, "x": {}}})
    with pytest.raises(InvalidInput) as info:
        contract.validate_schema(SCHEMA, source="train.csv")
    assert str(info.value) == (
        "contract names column 'x', which train.csv does not have; its columns: a, b, c, d"
    )
    with pytest.raises(InvalidInput, match="which the table does not have"):
        ContractCheck(contract, SCHEMA)


@pytest.mark.parametrize(
    ("column", "expectations", "message"),
    [
        (
            "b",
            {"between": [0, 1]},
            "columns.b.between: bounds of between need a numeric column,"
            " but 'b' in train.csv has type string",
        ),
        ("a", {"between": ["2024-01-01", None]}, "need a date or timestamp column"),
        ("a", {"freshness": "7d"}, "freshness needs a timestamp, date or ISO-8601 string column"),
        ("a", {"regex": "x"}, "regex needs a string column"),
        ("a", {"in_set": ["x", "y"]}, "values ['x', 'y'] cannot be read as int64"),
        ("d", {"unique": True}, "unique works on numbers, booleans, times, strings and binary"),
    ],
)
def test_validate_schema_rejects_expectations_that_cannot_apply(
    column: str, expectations: dict[str, Any], message: str
) -> None:
    contract = load_contract({"columns": {column: expectations}})
    with pytest.raises(InvalidInput) as info:
        contract.validate_schema(SCHEMA, source="train.csv")
    assert message in str(info.value)


def test_validate_schema_accepts_fitting_and_all_null_columns() -> None:
    contract = load_contract(
        {
            "columns": {
                "a": {"between": [0, 9], "in_set": [1, 2], "unique": True},
                "b": {"regex": ".*", "freshness": "1d", "in_set": [1]},
                "c": {"between": ["2024-01-01", None], "freshness": "1h"},
                "d": {"not_null": True, "type": "string"},
            }
        }
    )
    contract.validate_schema(SCHEMA, source="train.csv")
    empty = pa.schema([("a", pa.null()), ("b", pa.null()), ("c", pa.null()), ("d", pa.null())])
    contract.validate_schema(empty, source="empty.csv")
    report = _check(contract.to_dict(), pa.table({n: pa.nulls(2) for n in "abcd"}))
    assert [r.kind for r in report.failures] == ["freshness", "freshness", "not_null", "type"]


def test_stale_timestamps_with_time_zone_and_nanoseconds() -> None:
    t = pa.table(
        {
            "t": pa.array(
                [datetime(2026, 1, 10, 23, tzinfo=UTC) + timedelta(microseconds=1)],
                pa.timestamp("ns", "UTC"),
            )
        }
    )
    assert _one(_col("t", freshness="1h"), t).passed
    r = _one(_col("t", freshness="30m"), t)
    assert r.observed == "newest 2026-01-10T23:00:00.000001 is 60m old (limit 30m)"
    assert not r.passed


@pytest.mark.parametrize(
    "encode",
    [
        lambda a: a,
        lambda a: a.cast(pa.large_string()),
        lambda a: a.cast(pa.string_view()),
        lambda a: a.dictionary_encode(),
    ],
    ids=["string", "large_string", "string_view", "dictionary"],
)
def test_string_encodings_give_the_same_results(encode: Any) -> None:
    t = pa.table({"s": encode(pa.array(["a@b", "x", None, "a@b", "2026-01-01"]))})
    contract = _col("s", regex=".+@.+", in_set=["a@b"], unique=True, not_null=True, type="string")
    got = [(r.kind, r.failing, r.examples) for r in _check(contract, t).results]
    assert got == [
        ("regex", 2, [("t.csv", 1), ("t.csv", 4)]),
        ("in_set", 2, [("t.csv", 1), ("t.csv", 4)]),
        ("unique", 1, [("t.csv", 3)]),
        ("not_null", 1, [("t.csv", 2)]),
        ("type", 0, []),
    ]


def test_between_compares_in_the_columns_own_type() -> None:
    big = pa.table({"u": pa.array([2**64 - 1, 1, 0], pa.uint64())})
    r = _one(_col("u", between=[-5, 10]), big)
    assert (r.failing, r.examples, r.observed) == (
        1,
        [("t.csv", 0)],
        "max 18446744073709551615 > 10",
    )
    assert _one(_col("u", between=[None, 2**70]), big).passed
    with pytest.raises(InvalidInput, match="min 1180591620717411303424 is outside the range of"):
        _one(_col("u", between=[2**70, None]), big)
    small = pa.table({"i": pa.array([0, 1, 2], pa.int8())})
    half = _one(_col("i", between=[0.5, 1.5]), small)
    assert (half.failing, half.observed) == (2, "min 0 < 0.5, max 2 > 1.5")
    paris = pa.array(
        [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)],
        pa.timestamp("ms", "Europe/Paris"),
    )
    late = _one(_col("p", between={"max": "2024-02-01"}), pa.table({"p": paris}))
    assert (late.failing, late.observed) == (1, "max 2024-03-01T00:00:00 > 2024-02-01")
