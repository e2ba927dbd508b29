"""Schema and statistical profile of tabular data in one streaming pass.

Record batches are folded into per-column state whose size does not depend on
the row count: counts, min/max, mean and variance (Chan's parallel update),
a KLL quantile sketch (histograms come from it), a HyperLogLog distinct-count
sketch over vectorised 64-bit hashes, and a frequent-items sketch for
categories. Memory stays bounded whatever the size of the files; the profile
is what drift monitoring later compares against.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasketches as ds
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlplane.datasets.profile_data import (
    TABLE_FORMATS,
    ColumnProfile,
    TableProfile,
    from_json,
    table_format,
    to_json,
)

__all__ = [
    "TABLE_FORMATS",
    "ColumnProfile",
    "Profiler",
    "TableProfile",
    "from_json",
    "table_format",
    "to_json",
]

_HLL_P = 14  # 16,384 registers: about 0.8 % standard error
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_BINS = 20
_TOP_K = 10


class _Hll:
    """HyperLogLog over 64-bit hashes, updated a whole array at a time."""

    def __init__(self) -> None:
        self.registers = np.zeros(1 << _HLL_P, dtype=np.uint8)

    def update(self, hashes: np.ndarray) -> None:
        if not len(hashes):
            return
        idx = (hashes >> np.uint64(64 - _HLL_P)).view(np.int64)
        rest = (hashes << np.uint64(_HLL_P)) | np.uint64(1 << (_HLL_P - 1))  # never zero
        # Leading zeros of a 64-bit value from the exponent bits of its float64 form. Half
        # of it as int64 first: NumPy converts int64 to float in SIMD, uint64 one by one.
        half = (rest >> np.uint64(1)).view(np.int64).astype(np.float64)
        top = (half.view(np.int64) >> 52) - 1023  # floor(log2(rest)) - 1
        rank = (63 - top).clip(1, 64 - _HLL_P + 1).astype(np.uint8)
        # Only values that raise their register matter; after the first batches few do,
        # and ufunc.at (unbuffered) is slow per element.
        keep = rank > self.registers[idx]
        if keep.any():
            np.maximum.at(self.registers, idx[keep], rank[keep])

    def estimate(self) -> int:
        m = float(len(self.registers))
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.ldexp(1.0, -self.registers.astype(np.int64))))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))  # linear counting for small sets
        return round(raw)


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TOP_PER_BATCH = 1024


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fast, well-spread 64-bit hash of 64-bit keys."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def _hash_numbers(values: np.ndarray) -> np.ndarray:
    """64-bit hashes of float64 values (-0.0 and 0.0 alike, every NaN alike)."""
    v = values + 0.0  # turns -0.0 into 0.0
    v[np.isnan(v)] = np.nan
    return _mix(v.view(np.uint64))


_duck = threading.local()


def _hash_strings(arr: pa.Array) -> np.ndarray:
    """64-bit hashes of strings, computed by DuckDB straight from the Arrow buffers
    (about 4x pandas' object-array hashing, and no Python object per value)."""
    if len(arr) < 20_000:  # DuckDB's per-call cost only pays off on large arrays
        return np.asarray(
            pd.util.hash_array(arr.to_numpy(zero_copy_only=False), categorize=False), np.uint64
        )
    con = getattr(_duck, "con", None)
    if con is None:
        import duckdb

        con = _duck.con = duckdb.connect(":memory:")
        con.execute("SET threads=1")
    out = con.from_arrow(pa.table({"v": arr})).project("hash(v) AS h").to_arrow_table()
    return np.asarray(out.column(0).to_numpy(), dtype=np.uint64)


class _Column:
    def __init__(self, name: str, dtype: pa.DataType) -> None:
        self.name = name
        self.dtype = dtype
        self.temporal = pa.types.is_temporal(dtype)
        self.numeric = (
            pa.types.is_integer(dtype)
            or pa.types.is_floating(dtype)
            or pa.types.is_boolean(dtype)
            or pa.types.is_decimal(dtype)
        )
        self.count = self.nulls = self.count_finite = 0
        self.mean = self.m2 = 0.0
        self.min: Any = None
        self.max: Any = None
        self.hll = _Hll()
        self.kll = ds.kll_doubles_sketch(200) if self.numeric else None
        self.freq = (
            None if self.numeric or self.temporal else ds.frequent_strings_sketch(10)
        )  # 2^10 counters

    def update(self, arr: pa.Array) -> None:
        self.nulls += arr.null_count
        valid = arr.drop_null() if arr.null_count else arr
        n = len(valid)
        if not n:
            return
        self.count += n
        if self.numeric:
            source = valid if not pa.types.is_boolean(valid.type) else pc.cast(valid, pa.int8())
            values = source.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
            finite = values[np.isfinite(values)]
            self._moments(finite)
            if len(finite):
                self.kll.update(finite)  # type: ignore[union-attr]
            self.hll.update(_hash_numbers(values))
        elif self.temporal:
            mm = pc.min_max(valid)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            self.min = lo if self.min is None or lo < self.min else self.min
            self.max = hi if self.max is None or hi > self.max else self.max
            ints = pc.cast(valid, pa.int64() if valid.type.bit_width == 64 else pa.int32())
            self.hll.update(
                _mix(ints.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64))
            )
        else:
            texts = (
                valid
                if pa.types.is_string(valid.type) or pa.types.is_large_string(valid.type)
                else pc.cast(valid, pa.string())
            )
            mm = pc.min_max(texts)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            self.min = lo if self.min is None or (lo is not None and lo < self.min) else self.min
            self.max = hi if self.max is None or (hi is not None and hi > self.max) else self.max
            # Distinct values once per batch (Arrow's hash table, in C++): the distinct-count
            # sketch needs each value once, the frequent-items sketch its count.
            counts = pc.value_counts(texts)
            distinct = counts.field("values")
            self.hll.update(_hash_strings(distinct))
            if len(counts) > _TOP_PER_BATCH:
                # A value frequent overall is frequent in most batches: the batch's top
                # values are enough for the top-k sketch, and keep the Python loop short.
                top = pc.select_k_unstable(
                    counts.field("counts"), _TOP_PER_BATCH, [("dummy", "descending")]
                )
                counts = counts.take(top)
            for value, c in zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
            ):
                self.freq.update(str(value), int(c))  # type: ignore[union-attr]

    def _moments(self, values: np.ndarray) -> None:
        n = len(values)
        if not n:
            return
        b_mean = float(values.mean())
        b_m2 = float(((values - b_mean) ** 2).sum())
        total = self.count_finite + n
        delta = b_mean - self.mean
        self.mean += delta * n / total
        self.m2 += b_m2 + delta * delta * self.count_finite * n / total
        self.count_finite = total
        lo, hi = float(values.min()), float(values.max())
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)

    def result(self) -> ColumnProfile:
        base: dict[str, Any] = {
            "name": self.name,
            "type": str(self.dtype),
            "count": self.count,
            "nulls": self.nulls,
            "distinct": min(self.hll.estimate(), self.count),
        }
        if self.numeric and self.kll is not None and not self.kll.is_empty():
            std = math.sqrt(self.m2 / (self.count_finite - 1)) if self.count_finite > 1 else 0.0
            edges = (
                np.linspace(self.min, self.max, _BINS + 1).tolist()
                if self.max > self.min
                else [self.min, self.max]
            )
            pmf = self.kll.get_pmf(edges[1:-1]) if len(edges) > 2 else [1.0]
            base.update(
                min=self.min,
                max=self.max,
                mean=self.mean,
                std=std,
                quantiles={
                    str(q): float(v)
                    for q, v in zip(
                        _QUANTILES, self.kll.get_quantiles(list(_QUANTILES)), strict=True
                    )
                },
                histogram={
                    "edges": edges,
                    "counts": [round(p * self.count_finite) for p in pmf[: len(edges) - 1]],
                },
            )
        elif self.temporal:
            base.update(
                min=None if self.min is None else _iso(self.min),
                max=None if self.max is None else _iso(self.max),
            )
        elif self.freq is not None:
            items = self.freq.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
            base.update(
                min=None if self.min is None else str(self.min),
                max=None if self.max is None else str(self.max),
                top=[(str(v), int(est)) for v, est, _lb, _ub in items[:_TOP_K]],
            )
        return ColumnProfile(**base)


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class Profiler:
    """Fold record batches into a profile: ``update`` many times, then ``result``."""

    def __init__(self, schema: pa.Schema) -> None:
        self.rows = 0
        self._columns = [_Column(f.name, f.type) for f in schema]

    def update(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        for col, arr in zip(self._columns, batch.columns, strict=True):
            col.update(arr)

    def result(self) -> TableProfile:
        return TableProfile(rows=self.rows, columns=[c.result() for c in self._columns])


def profile_batches(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> TableProfile:
    profiler = Profiler(schema)
    for batch in batches:
        profiler.update(batch)
    return profiler.result()


def profile_files(
    paths: Sequence[str | Path], file_format: str, batch_size: int = 65_536
) -> TableProfile:
    """Profile CSV, Parquet or JSON Lines files, streamed batch by batch."""
    import pyarrow.dataset as pads

    dataset = pads.dataset([str(p) for p in paths], format=file_format)
    return profile_batches(dataset.schema, dataset.to_batches(batch_size=batch_size))
