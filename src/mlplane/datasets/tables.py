"""Rows of the data domain."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from mlplane.db.base import Base


class DatasetRow(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(250))
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("project_id", "name"),)


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(255))
    contract: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON of the quality contract the version was checked against."""
    quality: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON :class:`ContractReport`: every expectation's result, warnings included."""
    pii_policy: Mapped[str | None] = mapped_column(Text, nullable=True)
    pii_unhandled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """PII was found and no policy handled it: refused as a training input unless allowed."""
    derived_from: Mapped[str | None] = mapped_column(String(300), nullable=True)
    """``name@version`` this version was made from (a sample), else None."""
    derivation: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON of how it was derived, e.g. ``{"op": "sample", "fraction": 0.01, "seed": 1}``."""

    __table_args__ = (UniqueConstraint("dataset_id", "version"),)


class DatasetFileRow(Base):
    __tablename__ = "dataset_files"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(80))
    chunks: Mapped[str] = mapped_column(Text)
    """JSON list of ``[digest, size]`` pairs, in order."""
    profile: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON :class:`TableProfile` of a table file (CSV, Parquet, JSON Lines)."""
    pii: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON :class:`PiiReport` of a table file: counts and row positions, never values."""


class DatasetTagRow(Base):
    __tablename__ = "dataset_tags"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class HashCacheRow(Base):
    """What a local file hashed to, keyed like DVC's cache: path, size, mtime, inode."""

    __tablename__ = "hash_cache"

    path: Mapped[str] = mapped_column(String(2000), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    inode: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(80))
    chunks: Mapped[str] = mapped_column(Text)


class TreeCacheRow(Base):
    """What a local folder (or file) last became, for a re-add that reads nothing.

    ``key`` is the source's real path and the PII policy it was added under; ``listing``
    a digest of every file's relative path, size, mtime and inode; ``version_digest``
    the digest of the version that listing was stored as. When a folder's listing and
    the dataset's newest version still match, the add is a no-op without a single
    per-file lookup (100,000 files: one row instead of 100,000).
    """

    __tablename__ = "tree_cache"

    key: Mapped[str] = mapped_column(String(2100), primary_key=True)
    listing: Mapped[str] = mapped_column(String(80))
    version_digest: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[int] = mapped_column(BigInteger)
