"""The streaming profile: exact moments, sketches within their error, bounded memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
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
