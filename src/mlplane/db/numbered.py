"""Numbered versions reached by number, by a movable name (tag, alias) or as ``latest``.

Datasets and models both keep immutable versions numbered from 1 under an
owner row, plus a table of names pointing at version numbers. One lookup
serves both, so an unknown selector reads the same everywhere: it says which
versions and names exist.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mlplane.errors import NotFound


def resolve(
    s: Session,
    selector: str,
    *,
    label: str,
    row: Any,
    owner: Any,
    number: Any,
    owner_id: int,
    pointer_owner: Any,
    pointer_name: Any,
    pointer_number: Any,
    pointers_are: str,
) -> Any:
    """The version row ``selector`` names: a number, a pointer name, or ``latest``.

    Args:
        label: what the error calls the object, e.g. ``"transactions"``.
        row, owner, number: the version table's class, owner column and number column.
        pointer_owner, pointer_name, pointer_number: the pointer table's columns.
        pointers_are: what the error calls the pointers (``"tags"``, ``"aliases"``).
    """
    if selector.isdigit():
        num: int | None = int(selector)
    else:
        num = s.scalar(
            select(pointer_number).where(pointer_owner == owner_id, pointer_name == selector)
        )
        if num is None and selector == "latest":  # no pointer row: the newest version
            num = s.scalar(select(func.max(number)).where(owner == owner_id))
    found = None if num is None else s.scalar(select(row).where(owner == owner_id, number == num))
    if found is None:
        have = list(s.scalars(select(number).where(owner == owner_id).order_by(number)))
        names = sorted(s.scalars(select(pointer_name).where(pointer_owner == owner_id)))
        raise NotFound(
            f"{label}@{selector} does not exist; versions: {', '.join(map(str, have)) or 'none'}"
            + (f"; {pointers_are}: {', '.join(names)}" if names else "")
        )
    return found
