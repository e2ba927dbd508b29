"""MLflow's registry search grammar: filter strings, ``order_by`` and page tokens.

A filter is clauses joined by ``AND``, each ``key comparator value``: ``name LIKE
'fraud%'``, ``tags.team = 'risk'``, ``run_id IN ('a', 'b')``, ``version_number >= 3``.
Keys may be quoted with backticks (``tags.`my key```), strings with single or double
quotes. LIKE is case-sensitive with ``%`` and ``_`` wildcards, ILIKE is not. The
registry of one server is small enough to filter in Python after one read, which
keeps the semantics exactly MLflow's (its file store does the same).

Page tokens are MLflow's: base64 of ``{"offset": n}``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cmp_to_key
from typing import Any

from mlplane.server.mlflow_api._wire import MlflowError

_KEY = r"(?:`[^`]+`|[A-Za-z_][\w]*)(?:\.(?:`[^`]+`|[\w]+))*"
_STRING = r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
_CLAUSE = re.compile(
    rf"\s*(?P<key>{_KEY})\s*"
    r"(?P<op>!=|<=|>=|=|<|>|NOT\s+IN\b|IN\b|ILIKE\b|LIKE\b)\s*"
    rf"(?P<value>{_STRING}|\((?:\s*(?:{_STRING})\s*,?)*\)|-?\d+)\s*",
    re.IGNORECASE,
)
_AND = re.compile(r"AND\b", re.IGNORECASE)
_ITEM = re.compile(_STRING)
_ORDER = re.compile(r"^\s*(?P<key>[\w.`]+)\s*(?P<dir>ASC|DESC)?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Clause:
    key: str
    """An attribute name, or ``tags.<key>`` (unquoted)."""
    op: str
    value: Any
    """A string, an int, or a tuple of strings (IN, NOT IN)."""


@dataclass(frozen=True, slots=True)
class Grammar:
    """What one search may filter and sort on."""

    strings: frozenset[str]
    numbers: frozenset[str]
    orders: dict[str, str]
    """``order_by`` key → attribute (``timestamp`` is MLflow's alias for creation)."""
    lists: frozenset[str] = frozenset()
    """Attributes that take IN and NOT IN."""


MODELS = Grammar(
    strings=frozenset({"name"}),
    numbers=frozenset(),
    orders={
        "name": "name",
        "timestamp": "creation_timestamp",
        "creation_timestamp": "creation_timestamp",
        "last_updated_timestamp": "last_updated_timestamp",
    },
)
VERSIONS = Grammar(
    strings=frozenset({"name", "run_id", "source_path"}),
    numbers=frozenset({"version_number"}),
    orders={
        "name": "name",
        "version_number": "version_number",
        "creation_timestamp": "creation_timestamp",
        "timestamp": "creation_timestamp",
        "last_updated_timestamp": "last_updated_timestamp",
    },
    lists=frozenset({"name", "run_id"}),
)
VERSIONS_DEFAULT_ORDER = ["last_updated_timestamp DESC", "name ASC", "version_number DESC"]


def _unquote(text: str) -> str:
    if text[:1] in "'\"" and len(text) >= 2:
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _key(raw: str) -> str:
    head, dot, rest = raw.partition(".")
    head = head.strip("`").lower()
    if dot and head in ("tags", "tag"):
        return "tags." + rest.strip("`")
    if dot and head in ("attribute", "attributes", "attr"):
        return rest.strip("`")
    return raw.strip("`")


def parse_filter(text: str | None, grammar: Grammar) -> list[Clause]:
    """The clauses of a filter string; a malformed one is INVALID_PARAMETER_VALUE."""
    if not text or not text.strip():
        return []
    clauses, pos = [], 0
    while True:
        m = _CLAUSE.match(text, pos)
        if m is None:
            raise MlflowError(f"Invalid filter string {text!r}: cannot parse at {text[pos:]!r}")
        clauses.append(_clause(m, grammar, text))
        pos = m.end()
        if pos == len(text):
            return clauses
        more = _AND.match(text, pos)
        if more is None:
            raise MlflowError(f"Invalid filter string {text!r}: expected AND at {text[pos:]!r}")
        pos = more.end()


def _clause(m: re.Match[str], grammar: Grammar, text: str) -> Clause:
    key, op, raw = _key(m["key"]), re.sub(r"\s+", " ", m["op"].upper()), m["value"]
    is_tag = key.startswith("tags.")
    if not is_tag and key not in grammar.strings | grammar.numbers:
        allowed = [*sorted(grammar.strings | grammar.numbers), "tags.<key>"]
        raise MlflowError(
            f"Invalid filter string {text!r}: invalid attribute {key!r}; "
            f"use one of {', '.join(allowed)}"
        )
    if op in ("IN", "NOT IN"):
        if is_tag or key not in grammar.lists or not raw.startswith("("):
            raise MlflowError(
                f"Invalid filter string {text!r}: {op} needs one of "
                f"{', '.join(sorted(grammar.lists))} and a list of strings"
            )
        return Clause(key, op, tuple(_unquote(s) for s in _ITEM.findall(raw)))
    if key in grammar.numbers:
        if op not in ("=", "!=", "<", "<=", ">", ">=") or not re.fullmatch(r"-?\d+", raw):
            raise MlflowError(f"Invalid filter string {text!r}: {key} compares to an integer")
        return Clause(key, op, int(raw))
    if op not in ("=", "!=", "LIKE", "ILIKE") or raw[:1] not in "'\"":
        raise MlflowError(
            f"Invalid filter string {text!r}: {key} takes =, !=, LIKE or ILIKE and a quoted string"
        )
    return Clause(key, op, _unquote(raw))


def _like(pattern: str, flags: int) -> re.Pattern[str]:
    body = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.compile(body, flags | re.DOTALL)


def matches(clauses: Sequence[Clause], item: Any, attr: Callable[[Any, str], Any]) -> bool:
    """Whether ``item`` passes every clause; ``attr(item, key)`` reads its attributes and
    tags (None: it has no such tag)."""
    for c in clauses:
        have = attr(item, c.key)
        if c.op == "IN":
            ok = have in c.value
        elif c.op == "NOT IN":
            ok = have not in c.value
        elif have is None:  # no such tag: only "differs" holds, as in MLflow's stores
            ok = c.op == "!="
        elif c.op in ("LIKE", "ILIKE"):
            flags = re.IGNORECASE if c.op == "ILIKE" else 0
            ok = _like(c.value, flags).fullmatch(str(have)) is not None
        else:
            ok = {
                "=": have == c.value,
                "!=": have != c.value,
                "<": have < c.value,
                "<=": have <= c.value,
                ">": have > c.value,
                ">=": have >= c.value,
            }[c.op]
        if not ok:
            return False
    return True


def parse_order(order_by: Sequence[str] | None, grammar: Grammar) -> list[tuple[str, bool]]:
    """``(attribute, ascending)`` pairs, with ``name ASC`` last unless already named."""
    out: list[tuple[str, bool]] = []
    for clause in order_by or []:
        m = _ORDER.match(clause)
        key = _key(m["key"]) if m else ""
        if m is None or key not in grammar.orders:
            raise MlflowError(
                f"Invalid order_by clause {clause!r}: use KEY [ASC|DESC] with KEY one of "
                f"{', '.join(sorted(grammar.orders))}"
            )
        attr = grammar.orders[key]
        if any(a == attr for a, _ in out):
            raise MlflowError(f"`order_by` contains duplicate fields: {list(order_by or [])}")
        out.append((attr, (m["dir"] or "ASC").upper() == "ASC"))
    if not any(a == "name" for a, _ in out):
        out.append(("name", True))
    return out


def sort(
    items: list[Any], order: Sequence[tuple[str, bool]], attr: Callable[[Any, str], Any]
) -> list[Any]:
    def compare(a: Any, b: Any) -> int:
        for key, ascending in order:
            x, y = attr(a, key), attr(b, key)
            if x != y:
                return (-1 if x < y else 1) * (1 if ascending else -1)
        return 0

    return sorted(items, key=cmp_to_key(compare))


def max_results(value: int | None, default: int, limit: int) -> int:
    if value is None:
        return default
    if value < 1 or value > limit:
        raise MlflowError(
            f"Invalid value {value} for parameter 'max_results': it must be 1 to {limit}"
        )
    return value


def page(items: list[Any], token: str | None, size: int) -> tuple[list[Any], str | None]:
    """One page of ``items`` from MLflow's offset token, and the token of the next page."""
    offset = 0
    if token:
        try:
            offset = int(json.loads(base64.b64decode(token))["offset"])
        except (ValueError, KeyError, TypeError):
            raise MlflowError(f"Invalid page token {token!r}") from None
        if offset < 0:
            raise MlflowError(f"Invalid page token {token!r}")
    chunk = items[offset : offset + size]
    more = offset + size < len(items)
    nxt = base64.b64encode(json.dumps({"offset": offset + size}).encode()).decode()
    return chunk, nxt if more else None
