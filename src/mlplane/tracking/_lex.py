"""The small lexer the MLflow-style filters of experiments and logged models share."""

from __future__ import annotations

import re

from mlplane.errors import InvalidInput


def tokens(pattern: re.Pattern[str], text: str, what: str) -> list[tuple[str, str]]:
    """``(kind, text)`` for each match of ``pattern``'s named groups across ``text``."""
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = pattern.match(text, pos)
        if m is None or m.end() == pos:
            raise InvalidInput(
                f"invalid {what} filter {text!r}: unexpected {text[pos : pos + 20]!r}"
            )
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def unquote(raw: str) -> str:
    """A quoted string or identifier without its quotes: doubled quotes and backslash
    escapes undone."""
    quote = raw[0]
    body = raw[1:-1].replace(quote * 2, quote)
    return re.sub(r"\\(.)", r"\1", body)
