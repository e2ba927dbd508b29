"""Model references: ``models:/name/3``, ``models:/name@champion``, ``name@3``, ``name``."""

from __future__ import annotations

import re

from mlplane.errors import InvalidInput

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,249}$")
ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,99}$")


def parse(ref: str) -> tuple[str, str]:
    """(name, selector): the selector is a version number, an alias or ``latest``."""
    text = ref.strip()
    if text.startswith("models:/"):
        body = text[len("models:/") :]
        if "@" in body:
            name, _, sel = body.partition("@")
        elif "/" in body:
            name, _, sel = body.partition("/")
        else:
            name, sel = body, "latest"
    else:
        name, _, sel = text.partition("@")
        sel = sel or "latest"
    if not NAME.match(name):
        raise InvalidInput(
            f"{ref!r} does not name a model: use models:/NAME/VERSION, models:/NAME@ALIAS "
            "or NAME@VERSION (names: letters, digits, '_', '-', '.')"
        )
    if not (sel.isdigit() or ALIAS.match(sel)):
        raise InvalidInput(f"{ref!r}: {sel!r} is neither a version number nor an alias")
    return name, sel


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            f"{name!r} is not a model name: letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if alias == "latest" or not ALIAS.match(alias):
        raise InvalidInput(
            f"{alias!r} cannot be an alias: use a name like 'champion' ('latest' is reserved)"
        )
    return alias
