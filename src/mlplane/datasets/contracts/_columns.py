"""Column expectations as streaming state, each folded batch by batch."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlplane.datasets.contracts._kinds import (
    _EXAMPLES,
    _HAS_ZONE,
    _TYPES,
    _anchored,
    _instant,
    _is_str,
    _seconds,
)
from mlplane.datasets.contracts._model import Expectation
from mlplane.datasets.contracts._report import ExpectationResult, _n
from mlplane.errors import InvalidInput

if TYPE_CHECKING:
    from mlplane.datasets.contracts._checks import ContractCheck


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value + 0.0:.6g}"  # -0.0 and 0.0 compare equal: print them alike
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).replace(tzinfo=None).isoformat()
    return str(value)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}".removesuffix(".0") + unit
    return f"{seconds:.0f}s"


def _count(mask: pa.Array) -> int:
    return int(pc.sum(mask).as_py() or 0)


class _At(NamedTuple):
    file: str
    row: int  # of the batch's first row within the file
    ordinal: int  # of the batch's first row in the whole stream


class _Check(ABC):
    """State of one column expectation, folded batch by batch."""

    def __init__(self, exp: Expectation, dtype: pa.DataType) -> None:
        self.exp, self.dtype = exp, dtype
        self.rows = self.failing = 0
        self.examples: list[tuple[str, int]] = []

    def update(self, arr: pa.Array, at: _At) -> None:
        self.rows += len(arr)

    def _tally(self, mask: pa.Array, count: int, at: _At) -> None:
        self.failing += count
        need = _EXAMPLES - len(self.examples)
        if count and need > 0:
            hits = np.flatnonzero(mask.fill_null(False).to_numpy(zero_copy_only=False))[:need]
            self.examples += [(at.file, at.row + int(i)) for i in hits]

    @abstractmethod
    def outcome(self, run: ContractCheck) -> tuple[bool, str]:
        """Whether the expectation held over the whole stream, and what was seen."""

    def result(self, run: ContractCheck) -> ExpectationResult:
        passed, observed = self.outcome(run)
        failing, examples = (0, []) if passed else (self.failing, self.examples)
        e = self.exp
        return ExpectationResult(e.kind, e.column, e.severity, passed, failing, examples, observed)


class _Type(_Check):
    def outcome(self, run: ContractCheck) -> tuple[bool, str]:
        name = self.exp.args["type"]
        check = _TYPES.get(name)
        ok = check(self.dtype) if check else self.dtype == pa.type_for_alias(name)
        self.failing = self.rows
        return ok, f"type {self.dtype}" + ("" if ok else f", expected {name}")


class _NotNull(_Check):
    def update(self, arr: pa.Array, at: _At) -> None:
        if arr.null_count:
            self._tally(pc.is_null(arr), arr.null_count, at)

    def outcome(self, run: ContractCheck) -> tuple[bool, str]:
        return not self.failing, _n(self.failing, "null")


class _NullFraction(_NotNull):
    def update(self, arr: pa.Array, at: _At) -> None:
        self.rows += len(arr)
        super().update(arr, at)

    def outcome(self, run: ContractCheck) -> tuple[bool, str]:
        share, limit = (self.failing / self.rows if self.rows else 0.0), self.exp.args["max"]
        seen = f"{self.failing} of {_n(self.rows, 'row')} null: {share:.2%} (limit {limit:.2%})"
        return share <= limit, seen


class _Between(_Check):
    def __init__(self, exp: Expectation, dtype: pa.DataType) -> None:
        super().__init__(exp, dtype)
        self.nans = 0
        self.min: Any = None
        self.max: Any = None
        self.lo, self.hi = (self._scalar(exp.args.get(k), k) for k in ("min", "max"))

    def _scalar(self, bound: Any, side: str) -> Any:
        if bound is None or pa.types.is_null(self.dtype):
            return None
        if pa.types.is_integer(self.dtype) and not isinstance(bound, str):
            # Compare in the column's own type: uint64 must not go through int64 or double.
            bound = math.ceil(bound) if side == "min" else math.floor(bound)
            try:
                return pa.scalar(bound, self.dtype)
            except (OverflowError, pa.ArrowInvalid):
                if (bound < 0) == (side == "min"):
                    return None  # beyond the type's range on the side that lets all pass
                raise InvalidInput(
                    f"contract columns.{self.exp.column}.between: {side} {bound} is outside"
                    f" the range of {self.dtype}, so no value could pass"
                ) from None
        if not isinstance(bound, str):
            return bound
        moment = _instant(bound)
        if pa.types.is_timestamp(self.dtype) and self.dtype.tz is not None:
            return pa.scalar(moment, pa.timestamp("us", self.dtype.tz))
        return pa.scalar(moment.replace(tzinfo=None), pa.timestamp("us"))

    def update(self, arr: pa.Array, at: _At) -> None:
        if pa.types.is_null(arr.type):
            return
        nan = pc.is_nan(arr) if pa.types.is_floating(arr.type) else None
        nans = _count(nan) if nan is not None else 0
        self.nans += nans
        low, high = pc.min_max(arr).values()
        if low.is_valid:
            self.min = low if self.min is None else pc.min_element_wise(self.min, low)
            self.max = high if self.max is None else pc.max_element_wise(self.max, high)
        below, above = _beyond(low, pc.less, self.lo), _beyond(high, pc.greater, self.hi)
        if not (below or above or nans):
            return  # the common case: one min_max pass, no mask
        masks = [nan] if nans else []
        masks += [pc.less(arr, self.lo)] if below else []
        masks += [pc.greater(arr, self.hi)] if above else []
        mask = masks[0]
        for more in masks[1:]:
            mask = pc.or_(mask, more)
        self._tally(mask, _count(mask), at)

    def outcome(self, run: ContractCheck) -> tuple[bool, str]:
        if self.min is None:
            return not self.failing, f"{self.nans} NaN" if self.nans else "no values"
        args, low, high = self.exp.args, _fmt(_py(self.min)), _fmt(_py(self.max))
        bad = []
        if _beyond(self.min, pc.less, self.lo):
            bad.append(f"min {low} < {args['min']}")
        if _beyond(self.max, pc.greater, self.hi):
            bad.append(f"max {high} > {args['max']}")
        if self.nans:
            bad.append(f"{self.nans} NaN")
        return not self.failing, ", ".join(bad) or f"min {low}, max {high}"


def _beyond(value: pa.Scalar, op: Callable[..., pa.Scalar], bound: Any) -> bool:
    return bound is not None and value.is_valid and bool(op(value, bound).as_py())


def _py(scalar: pa.Scalar) -> Any:
    if pa.types.is_timestamp(scalar.type) and scalar.type.unit == "ns":
        scalar = scalar.cast(pa.timestamp("us", scalar.type.tz), safe=False)
    return scalar.as_py()


class _Values(_Check):
    """in_set and regex: count valid values that do not match; remember a few."""

    def __init__(self, exp: Expectation, dtype: pa.DataType) -> None:
        super().__init__(exp, dtype)
        self.bad: list[Any] = []
        self.match: Callable[[pa.Array], pa.Array]
        if pa.types.is_null(dtype):
            return  # update skips all-null arrays
        if exp.kind == "in_set":
            allowed = pa.array(exp.args["values"]).cast(dtype)
            self.match = lambda a: pc.is_in(a, value_set=allowed)
        else:
            pattern = _anchored(exp.args["pattern"])
            self.match = lambda a: pc.match_substring_regex(a, pattern=pattern)

    def update(self, arr: pa.Array, at: _At) -> None:
        if pa.types.is_null(arr.type):
            return
        hit = self.match(arr)
        count = len(arr) - arr.null_count - _count(hit)
        if count:
            mask = pc.and_(pc.is_valid(arr), pc.invert(hit))
            self._tally(mask, count, at)
            if len(self.bad) < _EXAMPLES:
                new = [v for v in pc.unique(arr.filter(mask)).to_pylist() if v not in self.bad]
                self.bad += new[: _EXAMPLES - len(self.bad)]

    def outcome(self, run: ContractCheck) -> tuple[bool, str]:
        what = "not in set" if self.exp.kind == "in_set" else "not matching"
        seen = f"{_n(self.failing, 'value')} {what}"
        if self.bad:
            seen += ", e.g. " + ", ".join(
                repr(v) if isinstance(v, str) else _fmt(v) for v in self.bad
            )
        return not self.failing, seen


class _Freshness(_Check):
    def __init__(self, exp: Expectation, dtype: pa.DataType) -> None:
        super().__init__(exp, dtype)
        self.newest: int | None = None  # microseconds since the epoch, UTC
        self.error: str | None = None

    def update(self, arr: pa.Array, at: _At) -> None:
        if self.error or pa.types.is_null(arr.type) or arr.null_count == len(arr):
            return
        try:
            newest = _newest_us(arr)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            self.error = f"{at.file} has a value that is not ISO-8601: {exc}"
            return
        if newest is not None and (self.newest is None or newest > self.newest):
            self.newest = newest

    def outcome(self, run: ContractCheck) -> tuple[bool, str]:
        self.failing = 1
        limit = self.exp.args["max_age"]
        if self.error or self.newest is None:
            return False, self.error or "no values"
        newest = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self.newest)
        age = (run.now - newest).total_seconds()
        return age <= _seconds(limit), f"newest {_fmt(newest)} is {_age(age)} old (limit {limit})"


def _newest_us(arr: pa.Array) -> int | None:
    """The newest instant of a timestamp, date or ISO-8601 string array, in µs (naive = UTC)."""
    if _is_str(arr.type):
        try:
            arr = arr.cast(pa.timestamp("us"))
        except pa.ArrowInvalid:  # zone offsets: all of them, or some
            zoned = pc.fill_null(pc.match_substring_regex(arr, pattern=_HAS_ZONE), False)
            parts = [
                arr.filter(zoned).cast(pa.timestamp("us", "UTC")),
                arr.filter(pc.invert(zoned)).cast(pa.timestamp("us")),
            ]
            found = [n for n in map(_newest_us, parts) if n is not None]
            return max(found) if found else None
    newest = pc.max(arr)
    if not newest.is_valid:
        return None
    tz = getattr(arr.type, "tz", None)
    return int(newest.cast(pa.timestamp("us", tz), safe=False).value)


class _Unique(_Check):
    """64-bit keys of non-null values; duplicates found by sorting at the end."""

    def __init__(self, exp: Expectation, dtype: pa.DataType) -> None:
        super().__init__(exp, dtype)
        self.keys: list[np.ndarray] = []
        self.chunks: list[tuple[int, np.ndarray | None]] = []  # (ordinal, valid positions)
        self._duckdb: Any = None

    def update(self, arr: pa.Array, at: _At) -> None:
        positions = None
        if arr.null_count:
            positions = np.flatnonzero(pc.is_valid(arr).to_numpy(zero_copy_only=False))
            arr = arr.drop_null()
        if len(arr):
            self.keys.append(self._keys(arr))
            self.chunks.append(
                (at.ordinal, None if positions is None else positions.astype(np.int32))
            )

    def _keys(self, arr: pa.Array) -> np.ndarray:
        t = arr.type
        if pa.types.is_floating(t):
            values = arr.to_numpy(zero_copy_only=False).astype(np.float64) + 0.0  # -0.0 == 0.0
            values[np.isnan(values)] = np.nan  # one NaN bit pattern: NaNs are equal
            return values.view(np.uint64)
        if pa.types.is_integer(t) or pa.types.is_boolean(t):
            return arr.to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
        if pa.types.is_temporal(t):
            return (
                arr.view(pa.int64() if t.bit_width == 64 else pa.int32())
                .to_numpy()
                .astype(np.int64)
                .view(np.uint64)
            )
        if self._duckdb is None:
            import duckdb

            self._duckdb = duckdb.connect(config={"threads": 1})
        hashed = self._duckdb.from_arrow(pa.table({"v": arr})).project("hash(v)").fetchnumpy()
        return np.asarray(next(iter(hashed.values())), dtype=np.uint64)

    def outcome(self, run: ContractCheck) -> tuple[bool, str]:
        if self._duckdb is not None:
            self._duckdb.close()
        if not self.keys:
            return True, "0 duplicates"
        sizes = np.cumsum([0] + [len(k) for k in self.keys])
        keys = np.concatenate(self.keys)
        self.keys = []
        ordered = np.sort(keys)
        self.failing = int(np.count_nonzero(ordered[1:] == ordered[:-1]))
        del ordered
        if self.failing:
            order = np.argsort(keys, kind="stable")  # equal keys stay in stream order
            later = np.sort(order[1:][keys[order[1:]] == keys[order[:-1]]])[:_EXAMPLES]
            for i in later.tolist():
                chunk = int(np.searchsorted(sizes, i, side="right")) - 1
                ordinal, positions = self.chunks[chunk]
                within = i - int(sizes[chunk])
                self.examples.append(
                    run._locate(ordinal + (within if positions is None else int(positions[within])))
                )
        return not self.failing, _n(self.failing, "duplicate")


_CHECKS: dict[str, type[_Check]] = {
    "type": _Type,
    "not_null": _NotNull,
    "unique": _Unique,
    "between": _Between,
    "max_null_fraction": _NullFraction,
    "in_set": _Values,
    "regex": _Values,
    "freshness": _Freshness,
}
