"""Input rules of the tracking domain, checked before anything is written."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence

from mlplane.errors import InvalidInput, PayloadTooLarge
from mlplane.security import secrets_scan
from mlplane.tracking.entities import Metric, MetricColumns

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_NAME_LENGTH = 250
MAX_EXPERIMENT_NAME_LENGTH = 500
MAX_ARTIFACT_PATH_LENGTH = 1000
MAX_RESULTS = 50_000
MAX_INPUT_SCHEMA_LENGTH = 1_048_575
MAX_INPUT_PROFILE_LENGTH = 16_384
"""A dataset input's schema and profile, as long as MLflow's server allows them."""

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


Columns = tuple[list[str], list[int], list[int], list[float | None]]


def metrics(points: Sequence[Metric] | MetricColumns, limit: int) -> Columns:
    """Check a batch of points; returns columns ``(keys, steps, timestamps, values)``
    with NaN as None. Works column-wise so a 10,000-point batch costs a few milliseconds."""
    cols = points if isinstance(points, MetricColumns) else MetricColumns.from_points(points)
    n = len(cols.key)
    if not (len(cols.value) == len(cols.timestamp) == len(cols.step) == n):
        raise InvalidInput(
            "metric key, value, timestamp and step columns must have the same length"
        )
    if n > limit:
        raise PayloadTooLarge(f"a batch holds {n} metric points; the limit is {limit}: split it")
    keys = list(cols.key)
    for k in set(keys):
        key("metric", k)
    values = list(cols.value)
    if not all(type(v) is float for v in values):
        values = [_number(k, v) for k, v in zip(keys, values, strict=True)]
    steps = _integers("step", cols.step, -(2**63))
    stamps = _integers("timestamp", cols.timestamp, 0)
    return keys, steps, stamps, [None if v != v else v for v in values]


def _number(k: str, v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInput(f"metric {k!r} value {v!r} is not a number") from None


def _integers(kind: str, column: Sequence[int], low: int) -> list[int]:
    out = list(column)
    if not all(type(x) is int for x in out):
        try:
            out = [int(x) for x in out]
        except (TypeError, ValueError):
            raise InvalidInput(f"metric {kind}s must be integers") from None
    if out and (min(out) < low or max(out) >= 2**63):
        raise InvalidInput(f"a metric {kind} is out of range [{low}, 2**63)")
    return out


def string_map(kind: str, values: Mapping[str, object] | None) -> dict[str, str]:
    check = param_value if kind == "param" else tag_value
    return {key(kind, k): check(k, v) for k, v in (values or {}).items()}


def without_secrets(kind: str, values: dict[str, str], policy: str) -> dict[str, str]:
    """``values`` checked for credentials under ``policy`` (``refuse`` or ``mask``).

    The error names the key and the kind of secret, never the value: it is shown to the
    caller, written to logs and may reach a shared terminal.
    """
    out = dict(values)
    check = param_value if kind == "param" else tag_value
    for k, v in values.items():
        found = secrets_scan.find_secrets(v)
        if not found:
            continue
        if policy != "mask":
            raise InvalidInput(
                f"{kind} {k!r} looks like it holds a secret ({', '.join(found)}); mlplane does "
                f"not store credentials in {kind}s, which every reader of the project sees. "
                "Pass it through the environment or a secrets manager instead, or have the "
                "server set secrets_policy = 'mask' to store it masked"
            )
        out[k] = check(k, secrets_scan.mask(v))  # a mask is longer than a short secret
    return out


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


def input_description(schema: str, profile: str) -> None:
    """A dataset input's schema and profile within their limits."""
    for what, text, limit in (
        ("schema", schema, MAX_INPUT_SCHEMA_LENGTH),
        ("profile", profile, MAX_INPUT_PROFILE_LENGTH),
    ):
        if len(text) > limit:
            raise InvalidInput(
                f"a dataset input's {what} is {len(text):,} characters; at most {limit:,} are "
                f"kept: log a shorter {what}"
            )


def max_results(value: int) -> int:
    if not isinstance(value, int) or value < 1 or value > MAX_RESULTS:
        raise InvalidInput(f"max_results must be between 1 and {MAX_RESULTS}, got {value!r}")
    return value
