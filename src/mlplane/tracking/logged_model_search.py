"""Search over logged models: MLflow's ``search_logged_models`` filter and ordering.

The grammar is MLflow's for logged models: comparisons joined by ``AND``::

    name = 'model' AND params.alpha = '0.5' AND metrics.acc > 0.9 AND tags.`a b` LIKE 'x%'

Models are few per experiment (one per ``log_model`` call), so a filter is
evaluated in Python over the experiments' models rather than compiled to SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlplane.errors import InvalidInput
from mlplane.tracking._lex import tokens, unquote
from mlplane.tracking.entities import LoggedModel, ModelMetric

_STRING_ATTRIBUTES = {
    "name": "name",
    "model_id": "model_id",
    "model_type": "model_type",
    "status": "status",
    "source_run_id": "source_run_id",
    "experiment_id": "experiment_id",
}
_NUMERIC_ATTRIBUTES = {
    "creation_timestamp": "creation_time",
    "creation_time": "creation_time",
    "last_updated_timestamp": "last_update_time",
    "last_update_time": "last_update_time",
}
_ENTITIES = {
    "params": "params",
    "param": "params",
    "tags": "tags",
    "tag": "tags",
    "metrics": "metrics",
    "metric": "metrics",
    "attributes": "attributes",
    "attribute": "attributes",
}
_NUMBER_OPS = {"=", "!=", "<", "<=", ">", ">="}
_STRING_OPS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
      | (?P<bq>`[^`]*`)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[^\s=<>!(),'"`]+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Clause:
    entity: str  # "attributes", "params", "tags" or "metrics"
    key: str
    op: str
    value: float | str | tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    digest: str | None = None

    def matches(self, m: ModelMetric) -> bool:
        return m.dataset_name == self.name and self.digest in (None, m.dataset_digest)


def parse_filter(text: str | None) -> list[Clause]:
    """The comparisons of a filter (all must hold); an empty filter has none."""
    if not text or not text.strip():
        return []
    toks = tokens(_TOKEN, text, "logged-model")
    clauses: list[Clause] = []
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise InvalidInput(f"invalid filter {text!r}: it ends too early")
        i += 1
        return toks[i - 1]

    while True:
        kind, tok = take()
        if kind == "word" and tok.endswith(".") and i < len(toks) and toks[i][0] in ("bq", "str"):
            tok += take()[1]
        elif kind in ("bq", "str"):
            tok = "attributes." + tok
        elif kind != "word":
            raise InvalidInput(f"invalid filter {text!r}: expected a name, got {tok!r}")
        entity, key = _identifier(tok)
        kind, op = take()
        op = op.upper()
        if op == "NOT":
            op = "NOT " + take()[1].upper()
        op = "!=" if op == "<>" else op
        clauses.append(Clause(entity, key, op, _value(text, entity, key, op, take, toks, i)))
        i = _skip_list(toks, i) if op in ("IN", "NOT IN") else i
        if i >= len(toks):
            return clauses
        kind, tok = take()
        if tok.upper() != "AND":
            raise InvalidInput(f"invalid filter {text!r}: expected AND, got {tok!r}")


def _identifier(tok: str) -> tuple[str, str]:
    head, dot, rest = tok.partition(".")
    if dot and head.lower() in _ENTITIES:
        entity = _ENTITIES[head.lower()]
        key = unquote(rest) if rest[:1] in ("`", "'", '"') else rest
    else:
        entity, key = "attributes", unquote(tok) if tok[:1] in "`'\"" else tok
    if not key:
        raise InvalidInput(f"invalid filter: {tok!r} names no key")
    if entity == "attributes" and key not in _STRING_ATTRIBUTES and key not in _NUMERIC_ATTRIBUTES:
        known = ", ".join(sorted({*_STRING_ATTRIBUTES, *_NUMERIC_ATTRIBUTES}))
        raise InvalidInput(f"invalid filter: unknown attribute {key!r} (one of {known})")
    return entity, key


def _numeric(entity: str, key: str) -> bool:
    return entity == "metrics" or (entity == "attributes" and key in _NUMERIC_ATTRIBUTES)


def _value(
    text: str,
    entity: str,
    key: str,
    op: str,
    take: Callable[[], tuple[str, str]],
    toks: list[tuple[str, str]],
    i: int,
) -> float | str | tuple[str, ...]:
    allowed = _NUMBER_OPS if _numeric(entity, key) else _STRING_OPS
    if op not in allowed:
        raise InvalidInput(f"invalid filter {text!r}: {op} does not apply to {entity}.{key}")
    if op in ("IN", "NOT IN"):
        items: list[str] = []
        j = i
        if j >= len(toks) or toks[j][1] != "(":
            raise InvalidInput(f"invalid filter {text!r}: {op} takes a list in parentheses")
        j += 1
        while j < len(toks) and toks[j][1] != ")":
            kind, tok = toks[j]
            if kind == "str":
                items.append(unquote(tok))
            elif tok != ",":
                raise InvalidInput(f"invalid filter {text!r}: {op} lists quoted strings")
            j += 1
        return tuple(items)
    kind, tok = take()
    if _numeric(entity, key):
        try:
            return float(tok)
        except ValueError:
            raise InvalidInput(f"invalid filter {text!r}: {entity}.{key} needs a number") from None
    if kind != "str":
        raise InvalidInput(f"invalid filter {text!r}: quote the value {tok!r}")
    return unquote(tok)


def _skip_list(toks: list[tuple[str, str]], i: int) -> int:
    while i < len(toks) and toks[i][1] != ")":
        i += 1
    return i + 1


def latest_metrics(model: LoggedModel, datasets: Sequence[Dataset] = ()) -> dict[str, float]:
    """Each metric's value at its highest step (then newest), on the given datasets if any."""
    best: dict[str, ModelMetric] = {}
    for m in model.metrics:
        if datasets and not any(d.matches(m) for d in datasets):
            continue
        old = best.get(m.key)
        if old is None or (m.step, m.timestamp) >= (old.step, old.timestamp):
            best[m.key] = m
    return {k: m.value for k, m in best.items()}


def _left(model: LoggedModel, c: Clause, metrics: dict[str, float]) -> Any:
    if c.entity == "params":
        return model.params.get(c.key)
    if c.entity == "tags":
        return model.tags.get(c.key)
    if c.entity == "metrics":
        return metrics.get(c.key)
    name = _STRING_ATTRIBUTES.get(c.key) or _NUMERIC_ATTRIBUTES[c.key]
    return getattr(model, name)


def _like(pattern: str, value: str, *, fold: bool) -> bool:
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if fold else 0)) is not None


def _holds(left: Any, op: str, right: Any) -> bool:
    if left is None:
        return False
    if op == "LIKE":
        return _like(right, left, fold=False)
    if op == "ILIKE":
        return _like(right, left, fold=True)
    if op == "IN":
        return left in right
    if op == "NOT IN":
        return left not in right
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return ops[op](left, right)


def matches(model: LoggedModel, clauses: Sequence[Clause], datasets: Sequence[Dataset]) -> bool:
    metrics = latest_metrics(model, datasets)
    return all(_holds(_left(model, c, metrics), c.op, c.value) for c in clauses)


@dataclass(frozen=True, slots=True)
class Order:
    field: str
    ascending: bool = True
    dataset: Dataset | None = None


def sort(models: list[LoggedModel], order: Sequence[Order]) -> list[LoggedModel]:
    """Sorted by ``order`` (newest first without one); missing values always last."""
    out = sorted(models, key=lambda m: m.model_id)
    out.sort(key=lambda m: m.creation_time, reverse=True)
    for o in reversed(order):
        entity, key = _identifier(o.field)
        probe = Clause(entity, key, "=", "")
        sets = [o.dataset] if o.dataset else []
        present = [m for m in out if _left(m, probe, latest_metrics(m, sets)) is not None]
        missing = [m for m in out if _left(m, probe, latest_metrics(m, sets)) is None]
        present.sort(
            key=lambda m: _left(m, probe, latest_metrics(m, sets)),
            reverse=not o.ascending,
        )
        out = present + missing
    return out
