"""Input rules of the tracking domain, checked before anything is written."""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Mapping, Sequence

from mlplane.errors import InvalidInput, PayloadTooLarge
from mlplane.tracking.entities import Metric

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_NAME_LENGTH = 250
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_ARTIFACT_PATH_LENGTH = 1000
MAX_RESULTS = 50_000

_KEY = re.compile(r"^[\w\-./ :]+$")
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def key(kind: str, value: object) -> str:
    """A metric, param or tag key: 1 to 250 characters of letters, digits, ``_-./ :``."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{kind} key must be a non-empty string, got {value!r}")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{kind} key {value[:40]!r}… is {len(value)} characters; the limit is 250"
        )
    if not _KEY.match(value):
        raise InvalidInput(
            f"{kind} key {value!r} has characters that are not allowed: use letters, digits, "
            "underscores, dashes, periods, spaces, slashes and colons"
        )
    return value


def param_value(name: str, value: object) -> str:
    text = str(value)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidInput(
            f"param {name!r} value is {len(text)} characters; the limit is "
            f"{MAX_PARAM_VALUE_LENGTH} (log long values as an artifact)"
        )
    return text


def tag_value(name: str, value: object) -> str:
    text = str(value)
    if len(text) > MAX_TAG_VALUE_LENGTH:
        raise InvalidInput(
            f"tag {name!r} value is {len(text)} characters; the limit is {MAX_TAG_VALUE_LENGTH}"
        )
    return text


def run_id(value: object) -> str:
    if not isinstance(value, str) or not _RUN_ID.match(value):
        raise InvalidInput(f"not a run id: {value!r} (expected 32 lowercase hex digits)")
    return value


def experiment_id(value: object) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise InvalidInput(f"not an experiment id: {value!r} (expected an integer)") from None
    if number < 0 or number > 2**62:
        raise InvalidInput(f"not an experiment id: {value!r}")
    return number


def name(kind: str, value: object, limit: int = MAX_NAME_LENGTH) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{kind} name must be a non-empty string")
    if len(value) > limit:
        raise InvalidInput(f"{kind} name is {len(value)} characters; the limit is {limit}")
    return value


def metrics(points: Sequence[Metric], limit: int) -> list[tuple[str, int, int, float | None]]:
    """Check a batch of points; returns rows ``(key, step, timestamp, value-or-None-for-NaN)``."""
    if len(points) > limit:
        raise PayloadTooLarge(
            f"a batch holds {len(points)} metric points; the limit is {limit}: split it"
        )
    rows: list[tuple[str, int, int, float | None]] = []
    seen: set[str] = set()
    append = rows.append
    for point in points:
        k, v, ts, step = point
        if k not in seen:
            key("metric", k)
            seen.add(k)
        if type(v) is not float:
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise InvalidInput(f"metric {k!r} value {v!r} is not a number") from None
        if type(step) is not int or type(ts) is not int:
            try:
                step, ts = int(step), int(ts)
            except (TypeError, ValueError):
                raise InvalidInput(f"metric {k!r} step and timestamp must be integers") from None
        if not (-(2**63) <= step < 2**63 and 0 <= ts < 2**63):
            raise InvalidInput(f"metric {k!r} step or timestamp is out of the 64-bit range")
        append((k, step, ts, None if math.isnan(v) else v))
    return rows


def string_map(kind: str, values: Mapping[str, object] | None) -> dict[str, str]:
    check = param_value if kind == "param" else tag_value
    return {key(kind, k): check(k, v) for k, v in (values or {}).items()}


def artifact_path(value: str | None, *, allow_root: bool = False) -> str:
    """A relative POSIX path inside a run's artifacts: no ``..``, no absolute path, no NUL."""
    if value in (None, "", ".", "/") and allow_root:
        return ""
    if not isinstance(value, str) or not value:
        raise InvalidInput("artifact path must be a non-empty relative path")
    if "\x00" in value or "\\" in value:
        raise InvalidInput(f"artifact path {value!r} may not contain NUL bytes or backslashes")
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise InvalidInput(f"artifact path {value!r} must be relative, not absolute")
    parts = value.split("/")
    if any(p == ".." for p in parts):
        raise InvalidInput(f"artifact path {value!r} may not contain '..'")
    norm = posixpath.normpath(value).lstrip("/")
    if norm in ("", "."):
        if allow_root:
            return ""
        raise InvalidInput("artifact path must name a file")
    if len(norm) > MAX_ARTIFACT_PATH_LENGTH:
        raise InvalidInput(f"artifact path is longer than {MAX_ARTIFACT_PATH_LENGTH} characters")
    return norm


def max_results(value: int) -> int:
    if not isinstance(value, int) or value < 1 or value > MAX_RESULTS:
        raise InvalidInput(f"max_results must be between 1 and {MAX_RESULTS}, got {value!r}")
    return value
