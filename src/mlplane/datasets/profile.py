"""Schema and statistical profile of tabular data in one streaming pass.

Record batches are folded into per-column state whose size does not depend on
the row count: counts, min/max, mean and variance (Chan's parallel update), a
uniform random sample of at most 16,384 finite values (quantiles and
histograms come from it; exact up to that many values), a HyperLogLog
distinct-count sketch, and exact counts of text values while there are at most
65,536 distinct ones (a frequent-items sketch past that). Memory stays
bounded whatever the size of the files; the profile is what drift monitoring
later compares against.

Why it is built this way: the pass reads every value of every added table, so
its cost per value decides how fast ``data add`` is. Everything is a handful of
NumPy or Arrow passes over whole arrays, and the costly parts skip what cannot
change the result: the sample draws only the values that may enter it (bottom-k
of random keys, the candidates found from geometric gaps), the HyperLogLog
hashes every value but computes ranks only for hashes under their register's
bound, and text columns are profiled from their dictionary (each distinct value
once, its count from the indices), which the pipeline reads them as.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
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
_RANK_BITS = 64 - _HLL_P  # the hash bits above the register index
_EXACT = 1 << 12  # distinct counts up to this are exact
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_BINS = 20
_TOP_K = 10
_SAMPLE = 1 << 14  # values kept for quantiles: rank error about 0.4 %, KLL(200)'s 0.6 %
_CHUNK = 1 << 15  # values hashed at a time: the temporaries stay in the CPU's cache
# A batch with fewer distinct values than 1/_FEW of its length hashes just those: Arrow's
# hash table beats hashing every value only while it is tiny.
_FEW = 1024
_U = np.uint64


class _Hll:
    """HyperLogLog over 64-bit hashes: the low bits pick a register, the leading zeros of
    the rest are its rank."""

    def __init__(self) -> None:
        self.registers = np.zeros(1 << _HLL_P, dtype=np.uint8)
        # Per register, the bound the rest of a hash must be under to raise it: a
        # comparison per hash instead of its rank.
        self._below = np.full(1 << _HLL_P, 1 << _RANK_BITS, dtype=np.uint64)
        self._limit: np.uint64 | None = None  # hashes at or above it raise no register
        # The distinct hashes themselves while there are few: small counts stay exact (two
        # of 50 values sharing a register would make linear counting say 49).
        self._exact: np.ndarray | None = np.empty(0, dtype=np.uint64)

    def update(self, hashes: np.ndarray) -> None:
        if self._exact is not None:
            few = len(hashes) <= _EXACT and len(self._exact) <= _EXACT
            self._exact = np.union1d(self._exact, hashes) if few else None
        if self._limit is not None:
            # Once every register has rank r, only hashes with r leading zeros matter: after
            # the first million values that is a few per cent of them.
            hashes = np.compress(hashes < self._limit, hashes)
        idx = (hashes & _U((1 << _HLL_P) - 1)).view(np.int64)
        rest = hashes >> _U(_HLL_P)
        rising = rest < self._below[idx]
        if not rising.any():
            return
        idx, rest = idx[rising], rest[rising].view(np.int64)  # below 2**50: exact as float64
        exponent = (rest.astype(np.float64).view(np.int64) >> 52) - 1023  # floor(log2), 0: -1023
        rank = np.minimum(_RANK_BITS - exponent, _RANK_BITS + 1).astype(np.uint8)  # rest 0: 51
        np.maximum.at(self.registers, idx, rank)
        self._below[idx] = _U(1 << _RANK_BITS) >> self.registers[idx].astype(np.uint64)
        floor = int(self.registers.min())
        self._limit = _U(1 << (64 - floor)) if floor else None

    def estimate(self) -> int:
        if self._exact is not None and len(self._exact) <= _EXACT:
            return len(self._exact)
        m = float(len(self.registers))
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(_INVERSE_POWERS[self.registers]))
        zeros = int(np.count_nonzero(self.registers == 0))
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))  # linear counting for small sets
        return round(raw)


_INVERSE_POWERS = np.ldexp(1.0, -np.arange(_RANK_BITS + 2))  # 2 ** -rank
_M1 = _U(0xBF58476D1CE4E5B9)
_M2 = _U(0x94D049BB133111EB)
_TOP_PER_BATCH = 1024
_COUNTED = 1 << 16  # text values counted exactly, at most
_COUNTED_BYTES = 16 << 20
_CANONICAL_NAN = np.array([np.nan]).view(np.uint64)[0]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: a fast, well-spread 64-bit hash of 64-bit keys."""
    t = np.empty_like(x)
    with np.errstate(over="ignore"):
        for shift, factor in ((30, _M1), (27, _M2), (31, None)):
            np.right_shift(x, _U(shift), out=t)
            np.bitwise_xor(x, t, out=x)
            if factor is not None:
                np.multiply(x, factor, out=x)
    return x


def _number_hashes(values: np.ndarray, finite: bool, *, own: bool) -> np.ndarray:
    """Hashes of float64 values: -0.0 and 0.0 alike, every NaN alike. ``own``: the values
    are the caller's to overwrite (they are then hashed in place)."""
    keys = (values if own else values + 0.0).view(np.uint64)
    if own:
        np.add(values, 0.0, out=values)  # turns -0.0 into 0.0
    if not finite:
        keys[np.isnan(values)] = _CANONICAL_NAN
    return _mix(keys)


_duck = threading.local()


def _hash_strings(arr: pa.Array) -> np.ndarray:
    """64-bit hashes of strings, computed by DuckDB straight from the Arrow buffers
    (about 4x pandas' object-array hashing, and no Python object per value)."""
    if len(arr) < 20_000:  # DuckDB's per-call cost only pays off on large arrays
        return np.array(
            pd.util.hash_array(arr.to_numpy(zero_copy_only=False), categorize=False), np.uint64
        )
    con = getattr(_duck, "con", None)
    if con is None:
        import duckdb

        con = _duck.con = duckdb.connect(":memory:")
        con.execute("SET threads=1")
    out = con.from_arrow(pa.table({"v": arr})).project("hash(v) AS h").to_arrow_table()
    return np.array(out.column(0).to_numpy(), dtype=np.uint64)  # a copy: mixed in place


class _Sample:
    """A uniform random sample without replacement of a stream of values, at most ``size``.

    Each value gets a uniform random key and the sample is the values of the ``size``
    smallest keys. Once it is full, a value can only enter with a key below the largest
    kept one, ``tau``, which happens with probability ``tau``, independently: the gaps
    between such values are geometric, so a batch costs the values that may enter it
    (drawn straight from the gaps, their keys uniform below ``tau``), not its length.
    Candidates wait in ``_pending`` and are cut back to ``size`` when as many have
    gathered. Seeded: the same batches give the same sample.
    """

    def __init__(self, size: int = _SAMPLE, seed: int = 0) -> None:
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._keys = np.empty(0)
        self._values = np.empty(0)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._waiting = 0
        self._tau = 1.0

    def update(self, n: int, pick: Callable[[np.ndarray], np.ndarray]) -> None:
        """Offer a batch of ``n`` values; ``pick(positions)`` gives those of the positions."""
        start = 0
        room = self.size - len(self._values) - self._waiting
        if room == self.size and n > self.size:
            # A first batch larger than the sample: a uniform choice of ``size`` of its
            # values, and keys distributed as the smallest ``size`` of ``n`` uniform ones
            # (the largest is Beta(size, n - size + 1), the others uniform below it).
            tau = float(self._rng.beta(self.size, n - self.size + 1))
            chosen = np.sort(self._rng.choice(n, self.size, replace=False, shuffle=False))
            keys = np.append(self._rng.random(self.size - 1) * tau, tau)
            self._add(keys, pick(chosen))
            self._cut()
            return
        if room > 0:  # the first values fill it, whatever their keys
            head = np.arange(min(room, n))
            self._add(self._rng.random(len(head)), pick(head))
            start = len(head)
            if self._waiting + len(self._values) >= self.size:
                self._cut()
        if start == n:
            return
        if self._tau > 1 / 16:  # most values may enter: a key for each is cheaper
            keys = self._rng.random(n - start)
            positions = np.flatnonzero(keys < self._tau)
            keys, positions = keys[positions], positions + start
        else:
            expected = (n - start) * self._tau
            gaps = self._rng.geometric(self._tau, int(expected + 5 * math.sqrt(expected) + 16))
            positions = np.cumsum(gaps) + (start - 1)
            while positions[-1] < n:  # not enough gaps drawn: almost never
                more = self._rng.geometric(self._tau, len(gaps))
                positions = np.concatenate([positions, np.cumsum(more) + positions[-1]])
            positions = positions[: np.searchsorted(positions, n)]
            keys = self._rng.random(len(positions)) * self._tau
        if len(positions):
            self._add(keys, pick(positions))
            if self._waiting >= self.size:
                self._cut()

    def _add(self, keys: np.ndarray, values: np.ndarray) -> None:
        self._pending.append((keys, np.asarray(values, dtype=np.float64)))
        self._waiting += len(keys)

    def _cut(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(k for k, _ in self._pending)])
        values = np.concatenate([self._values, *(v for _, v in self._pending)])
        self._pending, self._waiting = [], 0
        if len(keys) > self.size:
            kept = np.argpartition(keys, self.size - 1)[: self.size]
            keys, values = keys[kept], values[kept]
        self._keys, self._values = keys, values
        if len(keys) == self.size:
            self._tau = float(keys.max())

    def finite_sorted(self) -> np.ndarray:
        """The sample's finite values, sorted (NaN and infinities take a place, no more)."""
        self._cut()
        return np.sort(self._values[np.isfinite(self._values)])


class _Tally:
    """How often each text value occurs: exact while the distinct values are few enough
    to keep, then a frequent-items sketch fed each batch's most frequent values.

    Batches' counts wait until they hold 65,536 entries (or 16 MiB of text), then merge
    in one Arrow hash pass (dictionary-encode the values, sum the counts per code).
    """

    def __init__(self) -> None:
        self.values: pa.Array | None = None
        self.counts = np.empty(0, dtype=np.int64)
        self._waiting: list[tuple[pa.Array, np.ndarray]] = []
        self._entries = self._bytes = 0
        self.sketch: Any = None

    def update(self, values: pa.Array, counts: np.ndarray) -> None:
        if self.sketch is not None:
            self._feed(values, counts)
            return
        self._waiting.append((values, counts))
        self._entries += len(counts)
        self._bytes += values.nbytes
        if self._entries > _COUNTED or self._bytes > _COUNTED_BYTES:
            self._merge()

    def _merge(self) -> None:
        parts = ([(self.values, self.counts)] if self.values is not None else []) + self._waiting
        self._waiting, self._entries, self._bytes = [], 0, 0
        if not parts:
            return
        kind = parts[0][0].type
        encoded = pa.concat_arrays([v.cast(kind) for v, _ in parts]).dictionary_encode()
        summed = np.bincount(
            encoded.indices.to_numpy(zero_copy_only=False),
            weights=np.concatenate([c for _, c in parts]),
            minlength=len(encoded.dictionary),
        )
        self.values, self.counts = encoded.dictionary, summed.astype(np.int64)
        if len(self.values) > _COUNTED or self.values.nbytes > _COUNTED_BYTES:
            self.sketch = ds.frequent_strings_sketch(10)  # 2^10 counters
            self._feed(self.values, self.counts)
            self.values, self.counts = None, np.empty(0, dtype=np.int64)

    def _feed(self, values: pa.Array, counts: np.ndarray) -> None:
        if len(counts) > _TOP_PER_BATCH:
            # A value frequent overall is frequent in most batches: the batch's top values
            # are enough for the sketch, and keep the Python loop short.
            top = np.argpartition(counts, len(counts) - _TOP_PER_BATCH)[-_TOP_PER_BATCH:]
            values, counts = values.take(pa.array(top)), counts[top]
        for value, c in zip(values.to_pylist(), counts.tolist(), strict=True):
            self.sketch.update(str(value), int(c))

    def top(self, k: int) -> list[tuple[str, int]]:
        """The ``k`` most frequent values and their counts (the sketch's upper estimates
        once there were too many values to count)."""
        self._merge()
        if self.sketch is not None:
            kinds = ds.frequent_items_error_type.NO_FALSE_NEGATIVES
            return [
                (str(v), int(e)) for v, e, _lb, _ub in self.sketch.get_frequent_items(kinds)[:k]
            ]
        if self.values is None:
            return []
        order = np.lexsort((np.arange(len(self.counts)), -self.counts))[:k]
        values = self.values.take(pa.array(order)).to_pylist()
        return [(str(v), int(c)) for v, c in zip(values, self.counts[order].tolist(), strict=True)]


def _quantile(ordered: np.ndarray, q: float) -> float:
    """The smallest value with at least ``q`` of the values at or below it (as KLL's)."""
    return float(ordered[max(math.ceil(q * len(ordered)) - 1, 0)])


class _Column:
    def __init__(self, name: str, dtype: pa.DataType, seed: int = 0) -> None:
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
        self._few = False  # few distinct values so far: hash a batch's distinct ones only
        self._next_check = 0
        self.sample = _Sample(seed=seed) if self.numeric else None
        self.freq = None if self.numeric or self.temporal else _Tally()
        self._tallied: tuple[tuple[int, ...], pa.Array, np.ndarray] | None = None

    def update(self, arr: pa.Array) -> None:
        self.nulls += arr.null_count
        valid = arr.drop_null() if arr.null_count else arr
        if not len(valid):
            return
        self.count += len(valid)
        if self.numeric:
            if pa.types.is_boolean(valid.type):
                self._bools(valid)
            else:
                self._numbers(valid)
        elif self.temporal:
            self._times(valid)
        else:
            self._texts(valid)

    def _numbers(self, valid: pa.Array) -> None:
        raw = valid.to_numpy(zero_copy_only=False)
        if raw.dtype == object:  # decimals
            raw = raw.astype(np.float64)
        self.sample.update(len(raw), raw.__getitem__)  # type: ignore[union-attr]
        distinct = self._few_distinct(valid)
        # A slice at a time, so that the temporaries stay in the CPU's cache.
        for start in range(0, len(raw), _CHUNK):
            part = raw[start : start + _CHUNK]
            values = part if part.dtype == np.float64 else part.astype(np.float64)
            finite = bool(np.isfinite(values.sum()))  # NaN and inf make the sum non-finite
            self._moments(values if finite else values[np.isfinite(values)])
            if distinct is None:  # integers as floats are never -0.0 or NaN: hashed in place
                self.hll.update(_number_hashes(values, finite, own=values is not part))
        if distinct is not None:
            self.hll.update(_number_hashes(distinct.astype(np.float64), False, own=True))
        self._check_few(len(raw))

    def _bools(self, valid: pa.Array) -> None:
        """Booleans from their count of true values; the sample picks the few it needs."""
        n, trues = len(valid), int(pc.sum(valid).as_py() or 0)
        mean = trues / n
        self._merge(n, mean, trues * (1 - mean) ** 2 + (n - trues) * mean**2, *_span(trues, n))
        self.sample.update(  # type: ignore[union-attr]
            n, lambda at: valid.take(pa.array(at)).to_numpy(zero_copy_only=False)
        )
        self.hll.update(_number_hashes(np.unique(_span(trues, n)), True, own=True))

    def _few_distinct(self, arr: pa.Array) -> np.ndarray | None:
        """The batch's distinct values when the column has few, else None."""
        if not self._few:
            return None
        distinct = pc.unique(arr).to_numpy(zero_copy_only=False)
        self._few = len(distinct) * _FEW <= len(arr)
        return distinct if self._few else None

    def _check_few(self, batch: int) -> None:
        """Whether the next batches should hash their distinct values only: asked each time
        the count doubles (an estimate reads every register)."""
        if not self._few and self.count >= self._next_check:
            self._next_check = 2 * self.count
            self._few = self.hll.estimate() * _FEW < batch

    def _times(self, valid: pa.Array) -> None:
        mm = pc.min_max(valid)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        self.min = lo if self.min is None or lo < self.min else self.min
        self.max = hi if self.max is None or hi > self.max else self.max
        ints = valid.view(pa.int64() if valid.type.bit_width == 64 else pa.int32())  # no copy
        values = self._few_distinct(ints)
        values = ints.to_numpy(zero_copy_only=False) if values is None else values
        for start in range(0, len(values), _CHUNK):
            keys = values[start : start + _CHUNK].astype(np.int64)  # a copy: mixed in place
            self.hll.update(_mix(keys.view(np.uint64)))
        self._check_few(len(valid))

    def _texts(self, valid: pa.Array) -> None:
        if not (pa.types.is_dictionary(valid.type) and _is_text(valid.type.value_type)):
            texts = valid if _is_text(valid.type) else pc.cast(valid, pa.string())
            tallies = pc.value_counts(texts)
            self._fold_texts(tallies.field("values"), tallies.field("counts").to_numpy())
            return
        # Each distinct value once, its count from the indices. Batches of one Parquet row
        # group share its dictionary: their counts add up, and the dictionary is folded in
        # once, when the next one comes (or at the end).
        dictionary = valid.dictionary
        counts = np.bincount(
            valid.indices.to_numpy(zero_copy_only=False), minlength=len(dictionary)
        )
        key = (
            *(b.address for b in dictionary.buffers() if b is not None),
            dictionary.offset,
            len(dictionary),
        )
        if self._tallied is not None and self._tallied[0] == key:
            self._tallied[2][:] += counts
            return
        self._fold_tallied()
        self._tallied = (key, dictionary, counts)

    def _fold_tallied(self) -> None:
        if self._tallied is None:
            return
        _, dictionary, counts = self._tallied
        self._tallied = None
        # The dictionary may hold values no batch used (a row group's, for a slice of it).
        used = np.flatnonzero(counts)
        if dictionary.null_count:
            used = used[_valid(dictionary)[used]]
        if len(used) < len(dictionary):
            dictionary, counts = dictionary.take(pa.array(used)), counts[used]
        self._fold_texts(dictionary, counts)

    def _fold_texts(self, distinct: pa.Array, counts: np.ndarray) -> None:
        """Fold distinct text values and how often each occurred."""
        if not len(distinct):
            return
        mm = pc.min_max(distinct)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        self.min = lo if self.min is None or (lo is not None and lo < self.min) else self.min
        self.max = hi if self.max is None or (hi is not None and hi > self.max) else self.max
        self.hll.update(_mix(_hash_strings(distinct)))
        self.freq.update(distinct, counts)  # type: ignore[union-attr]

    def _moments(self, values: np.ndarray) -> None:
        n = len(values)
        if n:
            mean = float(values.sum()) / n
            centred = values - mean
            # Not np.dot: BLAS wakes its thread pool for it, which spins on every core.
            m2 = float(np.einsum("i,i->", centred, centred))
            self._merge(n, mean, m2, float(values.min()), float(values.max()))

    def _merge(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        """Chan's parallel update with the moments of ``n`` more finite values."""
        total = self.count_finite + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count_finite * n / total
        self.count_finite = total
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)

    def result(self) -> ColumnProfile:
        self._fold_tallied()
        base: dict[str, Any] = {
            "name": self.name,
            "type": str(self.dtype),
            "count": self.count,
            "nulls": self.nulls,
            "distinct": min(self.hll.estimate(), self.count),
        }
        ordered = self.sample.finite_sorted() if self.sample is not None else None
        if ordered is not None and len(ordered):
            std = math.sqrt(self.m2 / (self.count_finite - 1)) if self.count_finite > 1 else 0.0
            edges = (
                np.linspace(self.min, self.max, _BINS + 1).tolist()
                if self.max > self.min
                else [self.min, self.max]
            )
            # Bins as KLL's inclusive PMF: (-inf, e1], (e1, e2], ..., (e19, +inf).
            below = np.searchsorted(ordered, edges[1:-1], side="right")
            mass = np.diff(below, prepend=0, append=len(ordered)) / len(ordered)
            base.update(
                min=self.min,
                max=self.max,
                mean=self.mean,
                std=std,
                quantiles={str(q): _quantile(ordered, q) for q in _QUANTILES},
                histogram={
                    "edges": edges,
                    "counts": [round(p * self.count_finite) for p in mass.tolist()],
                },
            )
        elif self.temporal:
            base.update(
                min=None if self.min is None else _iso(self.min),
                max=None if self.max is None else _iso(self.max),
            )
        elif self.freq is not None:
            base.update(
                min=None if self.min is None else str(self.min),
                max=None if self.max is None else str(self.max),
                top=self.freq.top(_TOP_K),
            )
        return ColumnProfile(**base)


def _span(trues: int, n: int) -> tuple[float, float]:
    """The smallest and largest of ``n`` booleans with ``trues`` true, as numbers."""
    return (0.0 if trues < n else 1.0), (1.0 if trues else 0.0)


def _valid(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _is_text(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype))


def _iso(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


class Profiler:
    """Fold record batches into a profile: ``update`` many times, then ``result``."""

    def __init__(self, schema: pa.Schema) -> None:
        self.rows = 0
        self._columns = [_Column(f.name, f.type, seed=i) for i, f in enumerate(schema)]

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
