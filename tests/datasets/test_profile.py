"""The streaming profile: exact moments, sketches within their error, bounded memory."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplane.datasets.profile import profile_batches, profile_files


def _table(n: int = 50_000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.normal(100, 15, n)
    amount[::97] = np.nan  # NaN values are not nulls
    return pa.table(
        {
            "id": np.arange(n),
            "amount": amount,
            "city": pa.array(
                rng.choice(["paris", "lyon", "nice", None], n, p=[0.6, 0.25, 0.1, 0.05])
            ),
        }
    )


def test_numeric_moments_quantiles_and_histogram() -> None:
    table = _table()
    prof = profile_batches(table.schema, table.to_batches(max_chunksize=4096))
    assert prof.rows == 50_000
    amount = table["amount"].to_numpy()
    finite = amount[np.isfinite(amount)]
    col = prof.column("amount")
    assert col.count == 50_000 and col.nulls == 0
    assert col.mean == pytest.approx(finite.mean(), rel=1e-12)
    assert col.std == pytest.approx(finite.std(ddof=1), rel=1e-9)
    assert (col.min, col.max) == (finite.min(), finite.max())
    assert col.quantiles["0.5"] == pytest.approx(np.median(finite), abs=0.02 * finite.std())
    assert sum(col.histogram["counts"]) == pytest.approx(len(finite), rel=0.01)
    ident = prof.column("id")
    assert ident.distinct == pytest.approx(50_000, rel=0.03)


def test_categories_nulls_and_top_values() -> None:
    table = _table()
    col = profile_batches(table.schema, table.to_batches(max_chunksize=1000)).column("city")
    nulls = table["city"].null_count
    assert col.nulls == nulls and col.count == 50_000 - nulls
    assert col.distinct == 3
    assert [v for v, _ in col.top[:3]] == ["paris", "lyon", "nice"]
    assert col.top[0][1] == pd.Series(table["city"].to_pylist()).value_counts()["paris"]
    assert (col.min, col.max) == ("lyon", "paris")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=300), st.integers(1, 50))
def test_batching_never_changes_the_moments(values: list[float], chunk: int) -> None:
    table = pa.table({"x": values})
    whole = profile_batches(table.schema, table.to_batches()).column("x")
    parts = profile_batches(table.schema, table.to_batches(max_chunksize=chunk)).column("x")
    assert parts.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-6)
    assert parts.std == pytest.approx(whole.std, rel=1e-6, abs=1e-6)
    assert (parts.min, parts.max, parts.count) == (whole.min, whole.max, whole.count)


def test_files_are_streamed_with_bounded_memory(tmp_path: Path) -> None:
    table = _table(200_000)
    pd.DataFrame(table.to_pandas()).to_csv(tmp_path / "a.csv", index=False)
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "a.parquet")
    from_csv = profile_files([tmp_path / "a.csv"], "csv", batch_size=10_000)
    from_parquet = profile_files([tmp_path / "a.parquet"], "parquet", batch_size=10_000)
    assert from_csv.rows == from_parquet.rows == 200_000
    assert from_csv.column("amount").mean == pytest.approx(from_parquet.column("amount").mean)

    def batches(n: int):  # type: ignore[no-untyped-def]
        for i in range(n):
            yield _table(20_000, seed=i).to_batches()[0]

    tracemalloc.start()
    profile_batches(_table(10).schema, batches(5))
    small = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    profile_batches(_table(10).schema, batches(50))
    large = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert large < 2 * small  # ten times the rows, about the same peak


def _kll_rank(values: np.ndarray, q: float) -> float:
    """The smallest value with at least ``q`` of the values at or below it."""
    ordered = np.sort(values)
    return float(ordered[max(int(np.ceil(q * len(ordered))) - 1, 0)])


def test_quantiles_and_histogram_are_exact_on_small_columns() -> None:
    rng = np.random.default_rng(3)
    values = np.round(rng.gamma(2.0, 10.0, 12_000), 1)  # ties at every bin edge
    table = pa.table({"x": values})
    col = profile_batches(table.schema, table.to_batches(max_chunksize=777)).column("x")
    qs = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    assert col.quantiles == {str(q): _kll_rank(values, q) for q in qs}
    edges = col.histogram["edges"]
    below = np.searchsorted(np.sort(values), edges[1:-1], side="right")
    assert col.histogram["counts"] == np.diff(below, prepend=0, append=len(values)).tolist()


@pytest.mark.parametrize("largest", [60_000, 200_000])  # first batches below, above the sample
@pytest.mark.parametrize("order", ["sorted", "shuffled", "reversed"])
def test_quantiles_of_a_long_stream_are_uniform_whatever_the_order(
    order: str, largest: int
) -> None:
    # The sample must weigh every batch alike: a sorted stream shows any skew at once.
    n = 600_000
    values = np.arange(n, dtype=np.float64)
    if order == "shuffled":
        np.random.default_rng(1).shuffle(values)
    elif order == "reversed":
        values = values[::-1].copy()
    sizes = np.random.default_rng(2).integers(1, largest, 40)
    cuts = np.unique(np.clip(np.cumsum(sizes), 0, n))
    parts = np.split(values, cuts[cuts < n])
    schema = pa.schema([("x", pa.float64())])
    batches = (pa.record_batch([pa.array(p)], schema=schema) for p in parts if len(p))
    col = profile_batches(schema, batches).column("x")
    for q, v in col.quantiles.items():
        assert v / n == pytest.approx(float(q), abs=0.015), q
    counts = col.histogram["counts"]
    assert sum(counts) == pytest.approx(n, rel=0.001)
    assert max(abs(c - n / 20) for c in counts) < 0.2 * n / 20  # 3.4 % standard error


def test_distinct_counts_exact_when_few_and_close_when_many() -> None:
    rng = np.random.default_rng(4)
    n = 300_000
    table = pa.table(
        {
            "few_ints": rng.integers(0, 300, n),
            "few_floats": rng.integers(0, 50, n) / 4,
            "many_ints": rng.integers(0, 1 << 40, n),
            "many_floats": rng.random(n),
            "when": pa.array(rng.integers(0, 10**12, n), pa.timestamp("ms")),
            "text": pa.array([f"v{i}" for i in rng.integers(0, 3000, n)]),
            "flag": rng.random(n) < 0.5,
        }
    )
    prof = profile_batches(table.schema, table.to_batches(max_chunksize=50_000))
    for name in ("few_ints", "few_floats", "text", "flag"):
        assert prof.column(name).distinct == len(pc.unique(table[name])), name
    for name in ("many_ints", "many_floats", "when"):
        assert prof.column(name).distinct == pytest.approx(len(pc.unique(table[name])), rel=0.03)


def test_zeros_and_nans_are_one_value_each() -> None:
    table = pa.table({"x": [0.0, -0.0, float("nan"), float("nan"), 1.5, float("inf")]})
    col = profile_batches(table.schema, table.to_batches()).column("x")
    assert col.distinct == 4  # 0, NaN, 1.5, inf
    assert (col.min, col.max, col.mean) == (0.0, 1.5, 0.5)  # moments of finite values only
    assert col.quantiles["0.99"] == 1.5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans() | st.none(), min_size=1, max_size=400), st.integers(1, 50))
def test_booleans_profile_as_zero_and_one(values: list[bool | None], chunk: int) -> None:
    table = pa.table({"b": pa.array(values, pa.bool_())})
    col = profile_batches(table.schema, table.to_batches(max_chunksize=chunk)).column("b")
    known = np.array([v for v in values if v is not None], dtype=np.float64)
    assert (col.count, col.nulls) == (len(known), len(values) - len(known))
    if len(known):
        assert col.mean == pytest.approx(known.mean(), abs=1e-12)
        assert col.std == pytest.approx(known.std(ddof=1) if len(known) > 1 else 0.0, abs=1e-9)
        assert (col.min, col.max) == (known.min(), known.max())
        assert col.distinct == len(set(known.tolist()))
        counts = col.histogram["counts"]
        if known.min() < known.max():
            assert (counts[0], counts[-1]) == ((known == 0).sum(), (known == 1).sum())
        else:
            assert counts == [len(known)]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "", "zz", "é", "a b"]) | st.none(), max_size=300),
    st.integers(1, 60),
)
def test_dictionary_and_plain_text_profile_alike(values: list[str | None], chunk: int) -> None:
    plain = pa.table({"t": pa.array(values, pa.string())})
    # Dictionaries as Parquet's: shared by batches, holding values a batch does not use.
    extra = pa.array(["unused", *[v for v in values if v is not None]], pa.string()).unique()
    indices = pc.index_in(plain["t"], value_set=extra).combine_chunks()
    encoded = pa.table({"t": pa.DictionaryArray.from_arrays(indices, extra)})
    a = profile_batches(plain.schema, plain.to_batches(max_chunksize=chunk)).column("t")
    b = profile_batches(plain.schema, encoded.to_batches(max_chunksize=chunk)).column("t")
    assert a == b
    present = [v for v in values if v is not None]
    assert (b.count, b.distinct) == (len(present), len(set(present)))
    if present:
        assert (b.min, b.max) == (min(present), max(present))
        assert dict(b.top) == {v: present.count(v) for v in set(present)}


def test_top_values_are_exact_counts_up_to_many_distinct_values() -> None:
    # A flat spread of a few thousand values over many batches: every count is exact.
    rng = np.random.default_rng(5)
    values = pa.array([f"w{i}" for i in rng.integers(0, 4000, 200_000)])
    table = pa.table({"t": values})
    col = profile_batches(table.schema, table.to_batches(max_chunksize=7_000)).column("t")
    truth = sorted(((c, v) for v, c in Counter(values.to_pylist()).items()), key=lambda x: -x[0])
    assert [c for _, c in col.top] == [c for c, _ in truth[:10]]
    assert all(Counter(values.to_pylist())[v] == c for v, c in col.top)


def test_top_values_past_the_exact_tally_still_find_the_frequent_ones() -> None:
    rng = np.random.default_rng(6)
    n = 400_000
    ids = [f"id{i}" for i in range(n)]  # 400,000 distinct values: the sketch takes over
    for i in rng.integers(0, n, 5_000):
        ids[i] = "hot"
    table = pa.table({"t": ids})
    col = profile_batches(table.schema, table.to_batches(max_chunksize=50_000)).column("t")
    assert col.top[0][0] == "hot"
    assert col.top[0][1] >= ids.count("hot")  # the sketch's counts are upper bounds
