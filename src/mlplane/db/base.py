"""The declarative base every domain's ``tables.py`` builds on."""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def load_all_tables() -> MetaData:
    """Import every domain's tables so ``Base.metadata`` is complete."""
    from mlplane.blobs import tables as _blobs  # noqa: F401
    from mlplane.datasets import tables as _data  # noqa: F401
    from mlplane.projects import tables as _projects  # noqa: F401
    from mlplane.registry import tables as _registry  # noqa: F401
    from mlplane.security import tables as _security  # noqa: F401
    from mlplane.serving import tables as _serving  # noqa: F401
    from mlplane.tracking import tables as _tracking  # noqa: F401

    return Base.metadata
