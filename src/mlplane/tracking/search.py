"""The run-search filter language: MLflow's ``search_runs`` grammar plus OR, NOT and parentheses.

Grammar (keywords are case-insensitive)::

    filter     := or_expr END
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | "(" or_expr ")" | comparison
    comparison := identifier comparator value
    identifier := entity "." key | attribute_name
    key        := bare_key | `quoted` | "quoted" | 'quoted'

A bare key runs up to whitespace, a comparator, a parenthesis, a comma or a
quote, so ``metrics.val/loss`` and ``params.model.depth`` need no quoting.
String literals take a backslash escape or a doubled quote. LIKE patterns have
no escape character: ``%`` and ``_`` are always wildcards.

Parsing is kept apart from SQL (:mod:`mlplane.tracking.search_sql`) so it can be
tested and fuzzed without a database. :func:`render` is the inverse of
:func:`parse_filter` and gives a canonical spelling of any filter.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from mlplane.errors import InvalidInput

Entity: TypeAlias = Literal["metrics", "params", "tags", "attributes", "datasets"]
Value: TypeAlias = float | str | tuple[str, ...] | None

_ENTITY_WORDS: dict[Entity, tuple[str, ...]] = {
    "metrics": ("metric",),
    "params": ("param", "parameter", "parameters"),
    "tags": ("tag",),
    "attributes": ("attribute", "attr", "run"),
    "datasets": ("dataset",),
}
ENTITY_ALIASES: dict[str, Entity] = {w: e for e, ws in _ENTITY_WORDS.items() for w in (e, *ws)}
NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
STRING_ATTRIBUTES = frozenset(
    {"run_id", "run_name", "status", "artifact_uri", "user_id", "lifecycle_stage"}
)
ATTRIBUTES = NUMERIC_ATTRIBUTES | STRING_ATTRIBUTES
_ATTRIBUTE_ALIASES = {"created": "start_time"}
DATASET_FIELDS = frozenset({"name", "digest", "context"})

NUMBER_OPS = ("=", "!=", "<", "<=", ">", ">=")
_STRING_OPS = ("=", "!=", "LIKE", "ILIKE")
_FILTER_ENTITIES: tuple[Entity, ...] = ("metrics", "params", "tags", "attributes", "datasets")
_ORDER_ENTITIES: tuple[Entity, ...] = ("metrics", "params", "tags", "attributes")
# Past this, a filter is almost certainly machine-made garbage; failing early
# keeps Python's recursion limit (and SQLite's expression depth) out of reach.
_MAX_DEPTH = 100


@dataclass(frozen=True, slots=True)
class Comparison:
    """``<entity>.<key> <op> <value>``; attribute keys are canonical (``created``: ``start_time``).

    ``value`` is a float for numeric entities, a str for string ones, a tuple
    of str for IN / NOT IN, and None for IS NULL / IS NOT NULL.
    """

    entity: Entity
    key: str
    op: str
    value: Value = None


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


Expr: TypeAlias = Comparison | And | Or | Not


@dataclass(frozen=True, slots=True)
class OrderKey:
    entity: Entity
    key: str
    ascending: bool = True


def allowed_ops(entity: Entity, key: str) -> tuple[str, ...]:
    """The comparators the grammar accepts for ``entity.key``."""
    if entity == "metrics" or (entity == "attributes" and key in NUMERIC_ATTRIBUTES):
        return NUMBER_OPS
    if entity in ("params", "tags"):
        return (*_STRING_OPS, "IS NULL", "IS NOT NULL")
    if entity == "attributes":
        return (*_STRING_OPS, "IN", "NOT IN")
    return (*_STRING_OPS, "IN")


def parse_filter(text: str | None) -> Expr | None:
    """Parse a run-search filter; None, empty or blank text means "no filter".

    Raises:
        InvalidInput: on any syntax or type error; ``details["column"]`` is the
            1-based column where parsing failed.
    """
    if text is None or not text.strip():
        return None
    parser = _Parser(text, "filter")
    expr = parser.or_expr()
    parser.expect_end("AND, OR or end of filter")
    return expr


def parse_order_by(items: Sequence[str] | None) -> list[OrderKey]:
    """Parse ``order_by`` items such as ``"metrics.acc DESC"`` or ``"start_time"``.

    Raises:
        InvalidInput: on a malformed item; ``details["column"]`` is 1-based
            within that item.
    """
    keys = []
    for item in items or ():
        if not isinstance(item, str):
            raise InvalidInput(f"order_by items must be strings, got {item!r}")
        parser = _Parser(item, f"order_by item {item!r}")
        entity, key, _ = parser.identifier(_ORDER_ENTITIES)
        ascending = True
        if parser.at_keyword("ASC", "DESC"):
            ascending = parser.advance().text.upper() == "ASC"
        parser.expect_end("ASC, DESC or end of item")
        keys.append(OrderKey(entity, key, ascending))
    return keys


def render(expr: Expr) -> str:
    """Spell ``expr`` in the filter language, so that ``parse_filter(render(e)) == e``."""
    if isinstance(expr, Comparison):
        ident = f"{expr.entity}.{render_key(expr.key)}"
        if expr.op in ("IS NULL", "IS NOT NULL"):
            return f"{ident} {expr.op}"
        if isinstance(expr.value, tuple):
            value = "(" + ", ".join(_render_string(v) for v in expr.value) + ")"
        elif isinstance(expr.value, str):
            value = _render_string(expr.value)
        elif isinstance(expr.value, float | int):
            value = repr(float(expr.value))  # 'inf' and '-inf' parse back; NaN has no spelling
        else:
            raise ValueError(f"{expr.op} needs a value, got None")
        return f"{ident} {expr.op} {value}"
    if isinstance(expr, Not):
        inner = render(expr.operand)
        return f"NOT ({inner})" if isinstance(expr.operand, And | Or) else f"NOT {inner}"
    # A nested node of the same kind keeps its parentheses so the tree round-trips.
    word, wrap = (" AND ", And | Or) if isinstance(expr, And) else (" OR ", Or)
    return word.join(f"({render(o)})" if isinstance(o, wrap) else render(o) for o in expr.operands)


def render_key(key: str) -> str:
    """``key`` bare when the lexer would read it back whole, else quoted."""
    if key and not any(c.isspace() or c in _KEY_STOP for c in key):
        return key
    if "`" not in key:
        return f"`{key}`"
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- lexer ----------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?(?![A-Za-z0-9_]))", re.IGNORECASE
)
_OPERATOR = re.compile(r"<=|>=|<>|!=|=|<|>")
_KEY_STOP = frozenset("=!<>(),'\"`")
_QUOTES = "'\"`"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["ident", "word", "string", "number", "op", "punct", "end"]
    text: str  # as written, for messages
    pos: int  # 0-based offset into the source
    value: str | float = ""  # ident: key; string: contents; number: float; op: normalized
    prefix: str = ""  # ident only: the entity word before the dot


class _Lexer:
    """Produces tokens on demand, so an error is reported where the parser stopped."""

    def __init__(self, text: str, parser: _Parser) -> None:
        self._text = text
        self._pos = 0
        self._parser = parser

    def next(self) -> _Token:
        text, n = self._text, len(self._text)
        i = self._pos
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            self._pos = n
            return _Token("end", "", n)
        c = text[i]
        if m := _WORD.match(text, i):
            end = m.end()
            if end < n and text[end] == ".":
                key, end = self._key(end + 1, m.group())
                tok = _Token("ident", text[i:end], i, key, prefix=m.group())
            else:
                tok = _Token("word", m.group(), i, m.group())
        elif c in "'\"":
            value, end = self._quoted(i)
            tok = _Token("string", text[i:end], i, value)
        elif m := _NUMBER.match(text, i):
            end = m.end()
            tok = _Token("number", m.group(), i, float(m.group()))
        elif m := _OPERATOR.match(text, i):
            end = m.end()
            tok = _Token("op", m.group(), i, "!=" if m.group() == "<>" else m.group())
        elif c in "(),":
            end = i + 1
            tok = _Token("punct", c, i, c)
        else:
            raise self._parser.fail(i, f"unexpected character {c!r}")
        self._pos = end
        return tok

    def _key(self, i: int, prefix: str) -> tuple[str, int]:
        text, n = self._text, len(self._text)
        if i < n and text[i] == "`":
            close = text.find("`", i + 1)
            if close < 0:
                raise self._parser.fail(i, "unterminated backtick-quoted key")
            key, end = text[i + 1 : close], close + 1
        elif i < n and text[i] in _QUOTES:
            key, end = self._quoted(i)
        else:
            end = i
            while end < n and not text[end].isspace() and text[end] not in _KEY_STOP:
                end += 1
            key = text[i:end]
        if not key:
            raise self._parser.fail(i, f"expected a key after '{prefix}.'")
        return key, end

    def _quoted(self, start: int) -> tuple[str, int]:
        text, n, quote = self._text, len(self._text), self._text[start]
        out: list[str] = []
        i = start + 1
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
            elif c == quote and i + 1 < n and text[i + 1] == quote:
                out.append(quote)
                i += 2
            elif c == quote:
                return "".join(out), i + 1
            else:
                out.append(c)
                i += 1
        raise self._parser.fail(start, f"unterminated string (missing closing {quote})")


# --- parser ---------------------------------------------------------------------


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of input"
    if tok.kind == "string":
        return f"the string {tok.text}"
    return f"'{tok.text}'"


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self._what = what
        self._depth = 0
        self._lexer = _Lexer(text, self)
        self._tok = self._lexer.next()

    def fail(self, pos: int, message: str) -> InvalidInput:
        column = pos + 1
        return InvalidInput(f"invalid {self._what} at column {column}: {message}", column=column)

    def advance(self) -> _Token:
        tok = self._tok
        self._tok = self._lexer.next()
        return tok

    def at_keyword(self, *words: str) -> bool:
        return self._tok.kind == "word" and self._tok.text.upper() in words

    def _at_punct(self, char: str) -> bool:
        return self._tok.kind == "punct" and self._tok.value == char

    def expected(self, what: str) -> InvalidInput:
        return self.fail(self._tok.pos, f"expected {what}, got {_describe(self._tok)}")

    def expect_end(self, what: str) -> None:
        if self._tok.kind != "end":
            raise self.expected(what)

    def or_expr(self) -> Expr:
        operands = [self._and_expr()]
        while self.at_keyword("OR"):
            self.advance()
            operands.append(self._and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and_expr(self) -> Expr:
        operands = [self._not_expr()]
        while self.at_keyword("AND"):
            self.advance()
            operands.append(self._not_expr())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _not_expr(self) -> Expr:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise self.fail(self._tok.pos, f"filter nests deeper than {_MAX_DEPTH} levels")
        result: Expr
        if self.at_keyword("NOT"):
            self.advance()
            result = Not(self._not_expr())
        elif self._at_punct("("):
            opening = self.advance()
            result = self.or_expr()
            if not self._at_punct(")"):
                raise self.expected(f"AND, OR or ')' to close the '(' at column {opening.pos + 1}")
            self.advance()
        else:
            result = self._comparison()
        self._depth -= 1
        return result

    def identifier(self, entities: Collection[Entity]) -> tuple[Entity, str, _Token]:
        tok = self._tok
        entity: Entity | None
        if tok.kind == "ident":
            entity, key = ENTITY_ALIASES.get(tok.prefix.lower()), str(tok.value)
            if entity is None:
                raise self.fail(
                    tok.pos,
                    f"unknown entity type '{tok.prefix}' in '{tok.text}'; "
                    f"expected one of {', '.join(entities)}",
                )
            if entity not in entities:
                raise self.fail(tok.pos, f"'{tok.text}' cannot be used here")
        elif tok.kind == "word" and _attribute_name(tok.text) in ATTRIBUTES:
            entity, key = "attributes", tok.text
        else:
            raise self.expected(
                "an identifier such as metrics.<key>, params.<key>, tags.<key>, "
                "attributes.<name> or datasets.<field>"
            )
        names = {"attributes": ATTRIBUTES | _ATTRIBUTE_ALIASES.keys(), "datasets": DATASET_FIELDS}
        if entity in names:
            key = _attribute_name(key) if entity == "attributes" else key.lower()
            if key not in names[entity]:
                kind = "attribute" if entity == "attributes" else "dataset field"
                choices = ", ".join(sorted(names[entity]))
                raise self.fail(tok.pos, f"unknown {kind} '{tok.value}'; expected one of {choices}")
        self.advance()
        return entity, key, tok

    def _comparison(self) -> Comparison:
        entity, key, ident = self.identifier(_FILTER_ENTITIES)
        op_tok = self._tok
        op = self._comparator(ident)
        allowed = allowed_ops(entity, key)
        if op not in allowed:
            raise self.fail(
                op_tok.pos,
                f"{op} cannot be used with '{ident.text}'; expected one of {', '.join(allowed)}",
            )
        value: Value
        if op in ("IS NULL", "IS NOT NULL"):
            value = None
        elif op in ("IN", "NOT IN"):
            value = self._string_list(ident, op)
        elif allowed is NUMBER_OPS:
            value = self._number(ident, op)
        else:
            value = self._string(f"'{ident.text} {op}'")
        return Comparison(entity, key, op, value)

    def _comparator(self, ident: _Token) -> str:
        tok = self._tok
        word = tok.text.upper() if tok.kind == "word" else ""
        if tok.kind == "op" or word in ("LIKE", "ILIKE", "IN"):
            self.advance()
            return str(tok.value) if tok.kind == "op" else word
        if word == "NOT":
            self.advance()
            if not self.at_keyword("IN"):
                raise self.expected("IN after NOT")
            self.advance()
            return "NOT IN"
        if word == "IS":
            self.advance()
            negated = self.at_keyword("NOT")
            if negated:
                self.advance()
            if not self.at_keyword("NULL"):
                raise self.expected("NULL or NOT NULL after IS")
            self.advance()
            return "IS NOT NULL" if negated else "IS NULL"
        raise self.expected(f"a comparator (=, !=, <, <=, >, >=, LIKE, ILIKE) after '{ident.text}'")

    def _number(self, ident: _Token, op: str) -> float:
        tok = self._tok
        if tok.kind == "number" or (tok.kind == "word" and tok.text.lower() in ("inf", "infinity")):
            self.advance()
            return float(tok.value)
        if tok.kind == "string":
            raise self.fail(
                tok.pos, f"'{ident.text}' is numeric; expected a number, got {tok.text}"
            )
        raise self.expected(f"a number after '{ident.text} {op}'")

    def _string(self, after: str) -> str:
        if self._tok.kind != "string":
            raise self.expected(f"a quoted string after {after}")
        return str(self.advance().value)

    def _string_list(self, ident: _Token, op: str) -> tuple[str, ...]:
        if not self._at_punct("("):
            raise self.expected(f"'(' after '{ident.text} {op}'")
        self.advance()
        values = [self._string("'('")]
        while self._at_punct(","):
            self.advance()
            values.append(self._string("','"))
        if not self._at_punct(")"):
            raise self.expected(f"',' or ')' in the {op} list")
        self.advance()
        return tuple(values)


def _attribute_name(name: str) -> str:
    lowered = name.lower()
    return _ATTRIBUTE_ALIASES.get(lowered, lowered)
