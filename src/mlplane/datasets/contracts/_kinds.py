"""The expectation kinds, their arguments, and the type and time helpers they share."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa

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


def _instant(text: str) -> datetime:
    """An ISO-8601 date or timestamp as an aware UTC datetime (naive means UTC)."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _seconds(duration: str) -> float:
    found = _DURATION.fullmatch(duration)
    assert found is not None  # validated when parsed
    return float(found[1]) * _UNITS[found[2]]


def _value_type(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _kernel_type(t: pa.DataType) -> pa.DataType:
    """The type checks compute on: string views become large strings (more kernels)."""
    return pa.large_string() if pa.types.is_string_view(t) else t


def _anchored(pattern: str) -> str:
    return f"^(?:{pattern})$"
