"""MLflow's ``search_experiments`` filter and ``order_by``, evaluated over experiment entities.

Grammar (MLflow's: comparisons joined by AND, keywords case-insensitive)::

    filter     := comparison ("AND" comparison)*
    comparison := identifier comparator value | tags.<key> IS [NOT] NULL
    identifier := name | experiment_id | creation_time | last_update_time
                | attribute.<one of those> | tags.<key> | tag.<key>

``name`` and tags take ``=``, ``!=``, ``LIKE``, ``ILIKE``; the times take numeric
comparators; ``experiment_id`` takes ``=``, ``!=`` and ``IN (...)``. Experiments are
few next to runs and the service already reads every candidate to check
permissions, so matching happens in Python rather than in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mlplane.errors import InvalidInput
from mlplane.tracking._lex import tokens, unquote
from mlplane.tracking.entities import Experiment

_STRING_ATTRIBUTES = frozenset({"name", "experiment_id"})
_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})
_ATTRIBUTES = _STRING_ATTRIBUTES | _NUMERIC_ATTRIBUTES
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE")
_NUMBER_OPS = ("=", "!=", "<", "<=", ">", ">=")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
      | (?P<number>[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<ident>[A-Za-z_]\w*(?:\.(?:`[^`]*`|"[^"]*"|'[^']*'|[^\s=!<>(),'"`]+))?)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Clause:
    """``tags`` or ``attributes``, the key, the comparator, and the value (None for IS NULL)."""

    entity: str
    key: str
    op: str
    value: str | float | tuple[str, ...] | None


def _identifier(raw: str, allowed: frozenset[str]) -> tuple[str, str]:
    prefix, dot, key = raw.partition(".")
    if not dot:
        prefix, key = "attribute", raw
    if key[:1] in "`\"'":
        key = key[1:-1]
    if prefix in ("tag", "tags"):
        return "tags", key
    if prefix not in ("attribute", "attributes"):
        raise InvalidInput(
            f"invalid entity type {prefix!r} in experiment filter: use attribute or tags"
        )
    if key not in allowed:
        choices = ", ".join(sorted(allowed))
        raise InvalidInput(f"invalid experiment attribute {key!r}: use one of {choices}")
    return "attributes", key


def parse_filter(text: str | None) -> list[Clause]:
    """The AND-ed clauses of an experiment filter; empty for no filter.

    Raises:
        InvalidInput: on a syntax error or a comparator the field does not take.
    """
    toks = tokens(_TOKEN, text or "", "experiment")
    clauses: list[Clause] = []
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise InvalidInput(f"invalid experiment filter {text!r}: it ends too early")
        i += 1
        return toks[i - 1]

    while i < len(toks):
        if clauses:
            kind, word = take()
            if kind != "ident" or word.upper() != "AND":
                raise InvalidInput(f"invalid experiment filter {text!r}: expected AND at {word!r}")
        kind, raw = take()
        if kind != "ident":
            raise InvalidInput(f"invalid experiment filter {text!r}: expected a field at {raw!r}")
        entity, key = _identifier(raw, _ATTRIBUTES)
        kind, op = take()
        op = "!=" if op == "<>" else op.upper()
        if op == "IS":
            _, nxt = take()
            negated = nxt.upper() == "NOT"
            if negated:
                _, nxt = take()
            if nxt.upper() != "NULL" or entity != "tags":
                raise InvalidInput("IS NULL / IS NOT NULL only applies to tags.<key>")
            clauses.append(Clause(entity, key, "IS NOT NULL" if negated else "IS NULL", None))
            continue
        numeric = entity == "attributes" and key in _NUMERIC_ATTRIBUTES
        allowed: tuple[str, ...] = _NUMBER_OPS if numeric else _STRING_OPS
        if key == "experiment_id" and entity == "attributes":
            allowed = ("=", "!=", "IN")
        if op not in allowed:
            raise InvalidInput(
                f"invalid comparator {op!r} for {raw!r}: use one of {', '.join(allowed)}"
            )
        value: str | float | tuple[str, ...]
        if op == "IN":
            if take() != ("punct", "("):
                raise InvalidInput(f"expected '(' after {raw} IN")
            items = []
            while True:
                kind, tok = take()
                if kind not in ("string", "number"):
                    raise InvalidInput(f"expected a quoted id in the IN list, got {tok!r}")
                items.append(unquote(tok) if kind == "string" else tok)
                kind, tok = take()
                if tok == ")":
                    break
                if tok != ",":
                    raise InvalidInput(f"expected ',' or ')' in the IN list, got {tok!r}")
            value = tuple(items)
        else:
            kind, tok = take()
            if numeric:
                if kind != "number":
                    raise InvalidInput(f"{raw} is numeric: expected a number, got {tok!r}")
                value = float(tok)
            elif kind == "string":
                value = unquote(tok)
            else:
                raise InvalidInput(f"expected a quoted string after {raw} {op}, got {tok!r}")
        clauses.append(Clause(entity, key, op, value))
    return clauses


def _like(pattern: str, flags: int = 0) -> re.Pattern[str]:
    parts = (".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), flags | re.DOTALL)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def matches(exp: Experiment, clauses: Sequence[Clause]) -> bool:
    """True when ``exp`` satisfies every clause (MLflow's semantics: a missing tag never
    matches a comparison, ``!=`` included)."""
    for c in clauses:
        if c.entity == "tags":
            lhs = exp.tags.get(c.key)
            if c.op in ("IS NULL", "IS NOT NULL"):
                if (lhs is None) != (c.op == "IS NULL"):
                    return False
                continue
        else:
            lhs = getattr(exp, c.key)
        if lhs is None:
            return False
        if c.op == "IN":
            ok = lhs in c.value  # type: ignore[operator]
        elif c.op == "LIKE":
            ok = _like(str(c.value)).fullmatch(lhs) is not None
        elif c.op == "ILIKE":
            ok = _like(str(c.value), re.IGNORECASE).fullmatch(lhs) is not None
        else:
            ok = _COMPARE[c.op](lhs, c.value)
        if not ok:
            return False
    return True


def sort(exps: list[Experiment], order_by: Sequence[str] | None) -> list[Experiment]:
    """Experiments in ``order_by`` order (``"name"``, ``"creation_time DESC"``, ...); MLflow's
    default is newest first, and ties fall back to the experiment id, ascending."""
    keys: list[tuple[str, bool]] = []
    for item in order_by or ():
        if not isinstance(item, str) or not item.strip():
            raise InvalidInput(f"invalid order_by item {item!r}")
        words = item.split()
        ascending = True
        if len(words) > 1 and words[-1].upper() in ("ASC", "DESC"):
            ascending = words.pop().upper() == "ASC"
        entity, key = _identifier(" ".join(words), _ATTRIBUTES)
        if entity != "attributes":
            raise InvalidInput(f"cannot order experiments by {item!r}: use an attribute")
        keys.append((key, ascending))
    if not keys:
        keys = [("creation_time", False)]
    if "experiment_id" not in (k for k, _ in keys):
        keys.append(("experiment_id", True))
    out = list(exps)
    # Stable sorts from the least significant key up give a lexicographic multi-key order.
    for key, ascending in reversed(keys):
        if key == "experiment_id":
            out.sort(key=lambda e: int(e.experiment_id), reverse=not ascending)
        else:
            out.sort(key=lambda e, k=key: getattr(e, k), reverse=not ascending)  # type: ignore[misc]
    return out
