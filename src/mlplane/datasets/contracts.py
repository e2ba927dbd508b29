"""Data-quality contracts, checked as a gate in one streaming pass.

A contract (YAML, JSON or a mapping) lists expectations per column (``type``,
``not_null``, ``unique``, ``between``, ``max_null_fraction``, ``in_set``,
``regex``, ``freshness``) and per table (``row_count`` and custom ``sql``).
:func:`load_contract` turns it into a :class:`Contract`, or raises
``InvalidInput`` naming the offending key and what is allowed.

Why streaming: a dataset version can be far larger than memory, and the
service already reads each table file once, batch by batch, to profile it.
:class:`ContractCheck` rides on the same record batches instead of reading
the data again or loading it whole. Each expectation folds a batch into state
whose size does not depend on the row count (counts, a running min/max or
newest value, the first few failing rows), computed by ``pyarrow.compute``
kernels over whole arrays, never a Python loop per row. Two exceptions:

* ``unique`` keeps one 64-bit key per non-null row (plus in-batch positions
  for batches with nulls) and sorts the keys at the end. Keys are the values
  themselves for integers, floats, booleans and times (exact), and DuckDB's 64-bit
  ``hash`` for everything else, so among ten million distinct strings a false
  duplicate has a chance of about 3 in a million. The final sort briefly
  needs about twice the keys' memory.
* custom ``sql`` runs after the pass, in DuckDB over the stored files, with
  two threads, a memory limit, and no file access beyond those files.

Failing data never raises: :meth:`ContractCheck.finish` returns a
:class:`ContractReport` and the caller decides (the service raises
``QualityGateFailed`` when ``report.passed`` is false).
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from mlplane.errors import InvalidInput

SEVERITIES = ("error", "warn")
COLUMN_KINDS = (
    "type",
    "not_null",
    "unique",
    "between",
    "max_null_fraction",
    "in_set",
    "regex",
    "freshness",
)
TABLE_KINDS = ("row_count", "sql")
SQL_FORMATS = ("csv", "parquet", "json")
_EXAMPLES = 5
_ARGS = {  # the keys of each long form besides severity; the first is the short form's
    "type": ("type",),
    "not_null": (),
    "unique": (),
    "between": ("min", "max"),
    "max_null_fraction": ("max",),
    "in_set": ("values",),
    "regex": ("pattern",),
    "freshness": ("max_age",),
    "row_count": ("min", "max"),
    "sql": ("name", "query"),
}


def _is_str(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_num(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


_TYPES: dict[str, Callable[[pa.DataType], bool]] = {
    "int": pa.types.is_integer,
    "float": pa.types.is_floating,
    "number": _is_num,
    "string": _is_str,
    "bool": pa.types.is_boolean,
    "timestamp": pa.types.is_timestamp,
    "date": pa.types.is_date,
}
_TYPE_HELP = f"{', '.join(_TYPES)} or an Arrow type name such as int64, double, large_string"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*")
_HAS_ZONE = r"[T ]\d{2}:\d{2}.*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: ``NO`` (Norway) and ``on`` stay strings in an ``in_set``."""


_YamlLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True)
class Expectation:
    """One expectation of a contract.

    Attributes:
        kind: One of ``COLUMN_KINDS`` or ``TABLE_KINDS``.
        column: The column it applies to; None for ``row_count`` and ``sql``.
        severity: ``"error"`` (fails the gate) or ``"warn"`` (reported only).
        args: The long form's arguments, e.g. ``{"min": 0, "max": 10}``;
            ``sql`` has ``name`` and ``query``.
    """

    kind: str
    column: str | None
    severity: str
    args: dict[str, Any] = field(default_factory=dict)


def _bad(where: str, problem: str) -> InvalidInput:
    return InvalidInput(f"contract {where}: {problem}")


def _instant(text: str) -> datetime:
    """An ISO-8601 date or timestamp as an aware UTC datetime (naive means UTC)."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _seconds(duration: str) -> float:
    found = _DURATION.fullmatch(duration)
    assert found is not None  # validated when parsed
    return float(found[1]) * _UNITS[found[2]]


def _bound(value: Any, where: str, *, count: bool) -> float | int | str:
    if count:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _bad(where, f"takes a whole number of rows >= 0, not {value!r}")
        return value
    if isinstance(value, date):  # YAML reads 2024-01-01 as a date
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    if isinstance(value, str):
        try:
            _instant(value)
        except ValueError:
            pass
        else:
            return value
    raise _bad(where, f"takes a number or an ISO-8601 date/timestamp, not {value!r}")


def _check_args(kind: str, args: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate and normalise the long-form arguments of one expectation."""
    if kind == "type":
        name = args.get("type")
        if not isinstance(name, str):
            raise _bad(where, f"needs a type name: {_TYPE_HELP}")
        if name not in _TYPES:
            try:
                pa.type_for_alias(name)
            except ValueError:
                raise _bad(where, f"unknown type {name!r}; use {_TYPE_HELP}") from None
    elif kind in ("between", "row_count"):
        out = {
            k: _bound(args[k], f"{where}.{k}", count=kind == "row_count")
            for k in ("min", "max")
            if args.get(k) is not None
        }
        if not out:
            raise _bad(where, "needs min, max or both")
        if len({isinstance(v, str) for v in out.values()}) > 1:
            raise _bad(where, "min and max must both be numbers or both be dates/timestamps")
        lo, hi = out.get("min"), out.get("max")
        if lo is not None and hi is not None:
            order: Callable[[Any], Any] = _instant if isinstance(lo, str) else float
            if order(lo) > order(hi):
                raise _bad(where, f"min {lo} is greater than max {hi}")
        return out
    elif kind == "max_null_fraction":
        value = args.get("max")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise _bad(where, f"takes a fraction between 0 and 1, not {value!r}")
    elif kind == "in_set":
        values = args.get("values")
        if not isinstance(values, list) or not values:
            raise _bad(where, f"takes a non-empty list of allowed values, not {values!r}")
        values = [v.isoformat() if isinstance(v, date) else v for v in values]
        if not all(isinstance(v, str | int | float) for v in values):
            raise _bad(where, "takes plain values (strings, numbers, booleans)")
        try:
            pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            raise _bad(where, f"values must all be of one type, got {values!r}") from None
        return {"values": values}
    elif kind == "regex":
        pattern = args.get("pattern")
        if not isinstance(pattern, str):
            raise _bad(where, f"takes a pattern string, not {pattern!r}")
        try:
            pc.match_substring_regex(pa.array([""]), pattern=_anchored(pattern))
        except pa.ArrowInvalid as exc:
            raise _bad(where, f"invalid regular expression (RE2 syntax): {exc}") from None
    elif kind == "freshness":
        age = args.get("max_age")
        if not isinstance(age, str) or not _DURATION.fullmatch(age):
            raise _bad(where, f"takes a duration like 7d (units {', '.join(_UNITS)}), not {age!r}")
        return {"max_age": age.strip()}
    elif kind == "sql":
        for key in ("name", "query"):
            if not isinstance(args.get(key), str) or not args[key].strip():
                raise _bad(where, f"needs a non-empty {key}")
    return args


def _expectation(kind: str, column: str | None, raw: Any, where: str) -> Expectation | None:
    """Parse one expectation from its short or long form; None when switched off."""
    allowed = _ARGS[kind]
    severity: Any = "error"
    if isinstance(raw, Mapping):
        unknown = [k for k in raw if k not in (*allowed, "severity")]
        if unknown:
            keys = ", ".join((*allowed, "severity"))
            raise _bad(where, f"unknown key {unknown[0]!r}; allowed: {keys}")
        args = {k: raw[k] for k in allowed if k in raw}
        severity = raw.get("severity", "error")
    elif kind in ("not_null", "unique"):
        if not isinstance(raw, bool):
            raise _bad(where, f"takes true, false or a mapping with severity, not {raw!r}")
        if not raw:
            return None
        args = {}
    elif kind in ("between", "row_count"):
        if not isinstance(raw, list) or len(raw) != 2:
            raise _bad(where, f"takes {{min: .., max: ..}} or a [min, max] pair, not {raw!r}")
        args = {"min": raw[0], "max": raw[1]}
    else:
        args = {allowed[0]: raw}
    if severity not in SEVERITIES:
        raise _bad(f"{where}.severity", f"must be error or warn, not {severity!r}")
    return Expectation(kind, column, severity, _check_args(kind, args, where))


def _parse(data: Any) -> Contract:
    if not isinstance(data, Mapping):
        raise InvalidInput(
            f"a contract is a mapping with 'columns' and/or 'table', not {type(data).__name__}"
            f" {data!r:.60}; a path given as text must name an existing file"
        )
    unknown = [k for k in data if k not in ("columns", "table")]
    if unknown:
        raise InvalidInput(f"contract: unknown key {unknown[0]!r}; allowed: columns, table")
    columns, found = _mapping(data.get("columns"), "columns"), []
    for column, raw in columns.items():
        if not isinstance(column, str):
            raise _bad("columns", f"column names are strings; quote {column!r}")
        for kind, value in _mapping(raw, f"columns.{column}").items():
            if kind not in COLUMN_KINDS:
                allowed = ", ".join(COLUMN_KINDS)
                raise _bad(f"columns.{column}", f"unknown expectation {kind!r}; allowed: {allowed}")
            found.append(_expectation(kind, column, value, f"columns.{column}.{kind}"))
    for kind, value in _mapping(data.get("table"), "table").items():
        if kind not in TABLE_KINDS:
            raise _bad("table", f"unknown expectation {kind!r}; allowed: {', '.join(TABLE_KINDS)}")
        if kind == "row_count":
            found.append(_expectation(kind, None, value, "table.row_count"))
            continue
        if not isinstance(value, list):
            raise _bad("table.sql", "takes a list of {name, query, severity} mappings")
        for i, item in enumerate(value):
            item = {"name": f"sql_{i + 1}", "query": item} if isinstance(item, str) else item
            where = f"table.sql[{i}]"
            if not isinstance(item, Mapping):
                raise _bad(where, "takes a mapping with name, query and severity")
            found.append(_expectation("sql", None, item, where))
    names = [e.args["name"] for e in found if e is not None and e.kind == "sql"]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _bad("table.sql", f"names must be unique, {', '.join(twice)} is repeated")
    return Contract(list(columns), [e for e in found if e is not None])


def _mapping(value: Any, where: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(where, f"must be a mapping, not {type(value).__name__}")
    return value


def load_contract(source: str | os.PathLike[str] | Mapping[str, Any] | Contract) -> Contract:
    """Load and validate a contract.

    Args:
        source: A path to a ``.yaml``/``.yml``/``.json`` file, YAML text, a
            mapping, or a Contract (returned as is). A str that names an
            existing file is read; otherwise it is parsed as YAML text.

    Returns:
        The parsed contract.

    Raises:
        InvalidInput: The contract is malformed; the message names the key.
    """
    if isinstance(source, Contract):
        return source
    if isinstance(source, Mapping):
        return _parse(source)
    path = Path(source)
    if not isinstance(source, str) or os.path.isfile(source):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read contract file {path.name}: {exc.strerror}") from None
        if path.suffix.lower() == ".json":
            try:
                return _parse(json.loads(text))
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"contract file {path.name} is not valid JSON: {exc}") from None
    else:
        text = source
    try:
        return _parse(yaml.load(text, Loader=_YamlLoader))  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise InvalidInput(f"contract is not valid YAML: {exc}") from None


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _kernel_type(t: pa.DataType) -> pa.DataType:
    """The type checks compute on: string views become large strings (more kernels)."""
    return pa.large_string() if pa.types.is_string_view(t) else t


def _misfit(exp: Expectation, t: pa.DataType) -> str | None:
    """Why an expectation cannot apply to a column of type ``t`` (None if it can)."""
    if pa.types.is_null(t):
        return None  # an all-null column: nothing to check beyond nulls
    if exp.kind == "between":
        if isinstance(next(iter(exp.args.values())), str):
            fits, need = pa.types.is_timestamp(t) or pa.types.is_date(t), "date or timestamp"
        else:
            fits, need = _is_num(t), "numeric"
        return None if fits else f"bounds of {exp.kind} need a {need} column"
    if exp.kind == "in_set":
        try:
            pa.array(exp.args["values"]).cast(t)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return f"values {exp.args['values']} cannot be read as {t}"
    if exp.kind == "regex" and not _is_str(t):
        return "regex needs a string column"
    if exp.kind == "freshness" and not (
        pa.types.is_timestamp(t) or pa.types.is_date(t) or _is_str(t)
    ):
        return "freshness needs a timestamp, date or ISO-8601 string column"
    if exp.kind == "unique" and not (
        _is_num(t)
        or pa.types.is_boolean(t)
        or pa.types.is_temporal(t)
        or _is_str(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        return "unique works on numbers, booleans, times, strings and binary"
    return None


class Contract:
    """A validated data-quality contract; build one with :func:`load_contract`."""

    def __init__(self, columns: Sequence[str], expectations: Sequence[Expectation]) -> None:
        self._columns = tuple(columns)
        self._expectations = tuple(expectations)

    @property
    def columns(self) -> list[str]:
        """The columns the contract names, each of which the table must have."""
        return list(self._columns)

    @property
    def expectations(self) -> list[Expectation]:
        """Every expectation, in contract order (columns first, then table)."""
        return list(self._expectations)

    def validate_schema(self, schema: pa.Schema, *, source: str) -> None:
        """Check, before any data is written, that the contract can apply to ``schema``.

        Args:
            schema: The Arrow schema of the table.
            source: How to name the table in messages, e.g. ``"train.csv"``.

        Raises:
            InvalidInput: A named column is missing, or an expectation cannot
                apply to its column's type.
        """
        for name in self._columns:
            if not schema.get_all_field_indices(name):
                raise InvalidInput(
                    f"contract names column {name!r}, which {source} does not have;"
                    f" its columns: {', '.join(schema.names)}"
                )
        for exp in self._expectations:
            if exp.column is None:
                continue
            t = _value_type(schema.field(schema.get_all_field_indices(exp.column)[0]).type)
            problem = _misfit(exp, t)
            if problem:
                raise InvalidInput(
                    f"contract columns.{exp.column}.{exp.kind}: {problem},"
                    f" but {exp.column!r} in {source} has type {t}"
                )

    def to_dict(self) -> dict[str, Any]:
        """The contract in long form; :func:`load_contract` reads it back."""
        columns: dict[str, dict[str, Any]] = {name: {} for name in self._columns}
        table: dict[str, Any] = {}
        for e in self._expectations:
            long = {**e.args, "severity": e.severity}
            if e.column is not None:
                columns[e.column][e.kind] = long
            elif e.kind == "sql":
                table.setdefault("sql", []).append(long)
            else:
                table[e.kind] = long
        return {"columns": columns, "table": table}

    def to_json(self) -> str:
        """Serialise for storing with a dataset version."""
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_json(cls, text: str) -> Contract:
        """Read back what :meth:`to_json` wrote."""
        return _parse(json.loads(text))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Contract) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Contract({len(self._expectations)} expectations on {len(self._columns)} columns)"


@dataclass(frozen=True)
class ExpectationResult:
    """The outcome of one expectation.

    Attributes:
        kind: The expectation's kind.
        column: Its column; None for table-level expectations.
        severity: ``"error"`` or ``"warn"``.
        passed: Whether the data met it.
        failing: Failing rows; 0/1 for ``row_count`` and ``freshness``, rows
            returned for ``sql``.
        examples: Up to five ``(file, row index)`` of failing rows, 0-based
            within the file; empty where rows are not meaningful.
        observed: A short human detail, e.g. ``"max 12.5 > 10"``.
        name: The name of an ``sql`` expectation, else None.
    """

    kind: str
    column: str | None
    severity: str
    passed: bool
    failing: int
    examples: list[tuple[str, int]]
    observed: str
    name: str | None = None

    @property
    def label(self) -> str:
        """How the summary names the expectation."""
        return f"column {self.column!r} {self.kind}" if self.column else f"table {self.kind}"


@dataclass(frozen=True)
class ContractReport:
    """Every expectation's result; ``passed`` is the gate."""

    results: list[ExpectationResult]

    @property
    def passed(self) -> bool:
        """True when no expectation with severity error failed."""
        return not self.failures

    @property
    def failures(self) -> list[ExpectationResult]:
        """Failed expectations with severity error."""
        return [r for r in self.results if not r.passed and r.severity == "error"]

    @property
    def warnings(self) -> list[ExpectationResult]:
        """Failed expectations with severity warn."""
        return [r for r in self.results if not r.passed and r.severity == "warn"]

    def summary(self) -> str:
        """A multi-line text naming each failing expectation; usable as an error message."""
        head = (
            f"data-quality contract passed ({len(self.results)} expectations)"
            if self.passed
            else f"data-quality contract failed: {len(self.failures)} of"
            f" {len(self.results)} expectations with severity error"
        )
        lines = [head]
        for title, group in (("errors", self.failures), ("warnings", self.warnings)):
            if group:
                lines.append(f"{title}:")
            for r in group:
                rows = ", ".join(f"{f} row {i}" for f, i in r.examples)
                count = r.kind not in ("row_count", "freshness", "sql")
                detail = f"{_n(r.failing, 'failing row')} ({r.observed})" if count else r.observed
                lines.append(f"  - {r.label}: {detail}" + (f"; e.g. {rows}" if rows else ""))
        return "\n".join(lines)

    def to_json(self) -> str:
        """Serialise for storing with a dataset version."""
        return json.dumps({"results": [asdict(r) for r in self.results]}, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> ContractReport:
        """Read back what :meth:`to_json` wrote."""
        rows = json.loads(text)["results"]
        return cls(
            [
                ExpectationResult(**{**r, "examples": [tuple(x) for x in r["examples"]]})
                for r in rows
            ]
        )


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).replace(tzinfo=None).isoformat()
    return str(value)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}".removesuffix(".0") + unit
    return f"{seconds:.0f}s"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


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


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ContractCheck:
    """Check a contract over record batches in one streaming pass.

    Call :meth:`update` for every batch of every table file, in file order,
    then :meth:`finish` once.

    Args:
        contract: The contract to check.
        schema: The Arrow schema every batch follows.
        now: The time ``freshness`` measures from (default: now, UTC; naive
            means UTC).

    Raises:
        InvalidInput: The contract does not fit the schema.
    """

    def __init__(
        self, contract: Contract, schema: pa.Schema, *, now: datetime | None = None
    ) -> None:
        contract.validate_schema(schema, source="the table")
        now = now or datetime.now(UTC)
        self.now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
        self._contract = contract
        self._rows = 0
        self._offsets: dict[str, int] = {}
        self._segments: list[tuple[int, str, int]] = []  # (ordinal, file, row) per run of a file
        self._types = {
            name: schema.field(schema.get_all_field_indices(name)[0]).type
            for name in contract.columns
        }
        self._checks: list[_Check | None] = []
        self._by_column: dict[str, list[_Check]] = {}
        for exp in contract.expectations:
            check = None
            if exp.column is not None:
                dtype = _value_type(self._types[exp.column])
                check = _CHECKS[exp.kind](exp, dtype if exp.kind == "type" else _kernel_type(dtype))
                self._by_column.setdefault(exp.column, []).append(check)
            self._checks.append(check)

    def update(self, batch: pa.RecordBatch, *, file: str) -> None:
        """Fold one record batch of ``file`` into the check.

        Args:
            batch: The next batch; rows are numbered on from the previous
                batch of the same file.
            file: The table file the batch comes from, as reports should name it.

        Raises:
            InvalidInput: The batch lacks a contract column or its type cannot
                be cast to the schema's.
        """
        if not batch.num_rows:
            return
        row = self._offsets.get(file, 0)
        if not self._segments or self._segments[-1][1] != file:
            self._segments.append((self._rows, file, row))
        at = _At(file, row, self._rows)
        for name, checks in self._by_column.items():
            arr = self._column(batch, name, file)
            for check in checks:
                check.update(arr, at)
        self._rows += batch.num_rows
        self._offsets[file] = row + batch.num_rows

    def _column(self, batch: pa.RecordBatch, name: str, file: str) -> pa.Array:
        found = batch.schema.get_all_field_indices(name)
        if not found:
            raise InvalidInput(
                f"contract names column {name!r}, which {file} does not have;"
                f" its columns: {', '.join(batch.schema.names)}"
            )
        arr, want = batch.column(found[0]), self._types[name]
        if arr.type != want:
            try:
                arr = arr.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InvalidInput(
                    f"column {name!r} of {file} has type {arr.type}, which cannot be read as"
                    f" the table's {want}"
                ) from None
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        return arr.cast(pa.large_string()) if pa.types.is_string_view(arr.type) else arr

    def _locate(self, ordinal: int) -> tuple[str, int]:
        i = bisect.bisect_right(self._segments, ordinal, key=lambda s: s[0]) - 1
        start, file, row = self._segments[i]
        return file, row + ordinal - start

    def finish(
        self, sql_files: Sequence[str | os.PathLike[str]] = (), *, sql_format: str = "csv"
    ) -> ContractReport:
        """Finish the pass and run custom SQL.

        Args:
            sql_files: The stored table files, exposed to custom SQL as a
                DuckDB view named ``data``.
            sql_format: ``csv``, ``parquet`` or ``json`` (JSON Lines).

        Returns:
            The report; failing data never raises.

        Raises:
            InvalidInput: SQL expectations without files, an unknown format,
                or a query DuckDB cannot run.
        """
        sql = [e for e in self._contract.expectations if e.kind == "sql"]
        counts = _run_sql(sql, sql_files, sql_format) if sql else {}
        results = []
        for exp, check in zip(self._contract.expectations, self._checks, strict=True):
            if check is not None:
                results.append(check.result(self))
            elif exp.kind == "row_count":
                results.append(self._row_count(exp))
            else:
                n, name = counts[exp.args["name"]], exp.args["name"]
                seen = f"{_n(n, 'row')} returned by {name}"
                results.append(
                    ExpectationResult("sql", None, exp.severity, not n, n, [], seen, name)
                )
        return ContractReport(results)

    def _row_count(self, exp: Expectation) -> ExpectationResult:
        lo, hi, n = exp.args.get("min"), exp.args.get("max"), self._rows
        seen = _n(n, "row")
        if lo is not None and n < lo:
            seen += f" < min {lo}"
        elif hi is not None and n > hi:
            seen += f" > max {hi}"
        ok = "<" not in seen and ">" not in seen
        return ExpectationResult("row_count", None, exp.severity, ok, int(not ok), [], seen)


def _run_sql(
    expectations: Sequence[Expectation],
    files: Sequence[str | os.PathLike[str]],
    file_format: str,
) -> dict[str, int]:
    """Rows each query returns, with DuckDB confined to ``files``."""
    import duckdb

    names = ", ".join(e.args["name"] for e in expectations)
    if not files:
        raise InvalidInput(
            f"the contract has SQL expectations ({names}); pass sql_files to run them"
        )
    if file_format not in SQL_FORMATS:
        raise InvalidInput(f"sql_format {file_format!r} is not one of {', '.join(SQL_FORMATS)}")
    paths = [os.path.abspath(os.fspath(p)) for p in files]
    listed = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
    reader = {
        "csv": f"read_csv({listed}, auto_detect=true)",
        "parquet": f"read_parquet({listed})",
        "json": f"read_json({listed}, format='newline_delimited')",
    }[file_format]
    con = duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "512MB"})
    try:
        con.execute(f"CREATE VIEW data AS SELECT * FROM {reader}")
        # The queries come from users: they may read `data`, nothing else on this machine.
        con.execute(f"SET allowed_paths = {listed}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        counts = {}
        for e in expectations:
            query = e.args["query"].strip().rstrip(";")
            try:
                row = con.execute(f"SELECT count(*) FROM (\n{query}\n) AS failing").fetchone()
            except duckdb.Error as exc:
                raise InvalidInput(
                    f"contract sql {e.args['name']!r} does not run: {exc}".strip()
                ) from None
            counts[e.args["name"]] = int(row[0]) if row else 0
        return counts
    finally:
        con.close()


__all__ = [
    "COLUMN_KINDS",
    "SEVERITIES",
    "SQL_FORMATS",
    "TABLE_KINDS",
    "Contract",
    "ContractCheck",
    "ContractReport",
    "Expectation",
    "ExpectationResult",
    "load_contract",
]
