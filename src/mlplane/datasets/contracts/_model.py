"""The contract model: parsing and validating YAML, JSON or mappings into a :class:`Contract`."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from mlplane.datasets.contracts._kinds import (
    _ARGS,
    _DURATION,
    _TYPE_HELP,
    _TYPES,
    _UNITS,
    COLUMN_KINDS,
    SEVERITIES,
    TABLE_KINDS,
    _anchored,
    _instant,
    _is_num,
    _is_str,
    _value_type,
)
from mlplane.errors import InvalidInput


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
