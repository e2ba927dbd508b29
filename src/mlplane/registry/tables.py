"""Rows of the model registry."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mlplane.db.base import Base


class ModelRow(Base):
    __tablename__ = "registered_models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(250))
    description: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    protected_aliases: Mapped[str] = mapped_column(Text, default='["champion"]')
    """JSON list: aliases only an approver may move, and only through the policy."""
    policy: Mapped[str] = mapped_column(Text, default="{}")
    """JSON :class:`PromotionPolicy`."""
    version_seq: Mapped[int] = mapped_column(Integer, default=0)
    """The highest version number ever given out: a deleted version's number is never reused,
    so ``models:/name/3`` can never come to mean other files."""

    __table_args__ = (UniqueConstraint("project_id", "name"),)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"))
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    flavor: Mapped[str] = mapped_column(String(40))
    info: Mapped[str] = mapped_column(Text)
    """JSON: the flavor's save info (format, files, library version, pickle fallback)."""
    files: Mapped[str] = mapped_column(Text)
    """JSON list of {path, size, sha256, chunks}: every file, checked on every load."""
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON input/output schema inferred from the input example."""
    onnx: Mapped[str | None] = mapped_column(Text, nullable=True)
    """JSON: the ONNX conversion and its parity check, or why there is none."""
    scan: Mapped[str] = mapped_column(Text)
    """JSON :class:`ScanReport` of every file at registration."""
    scan_verdict: Mapped[str] = mapped_column(String(16))
    scan_override: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """Who accepted an ``unknown`` verdict (an audited decision), else None."""
    signed_by: Mapped[str | None] = mapped_column(String(80), nullable=True)
    """Key id of the project key that signed the manifest, else None."""
    manifest_signature: Mapped[bytes | None] = mapped_column(LargeBinary(64), nullable=True)
    metrics: Mapped[str] = mapped_column(Text, default="{}")
    params: Mapped[str] = mapped_column(Text, default="{}")
    environment: Mapped[str] = mapped_column(Text, default="{}")
    """JSON: python version and the exact versions of every installed distribution."""
    card: Mapped[str] = mapped_column(Text, default="{}")
    """JSON of the editable model-card fields (intended use, limitations, …)."""
    description: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """Last change of description, stage or tags; None: never changed since creation."""
    stage: Mapped[str] = mapped_column(String(20), default="None")
    """MLflow's (deprecated) stage: None, Staging, Production or Archived."""
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Where the files were copied from (an MLflow source URI), if not uploaded directly."""
    logged_model_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The MLflow 3 logged model (``m-…``) the files came from, if any."""

    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        Index("ix_model_versions_run", "run_id"),
    )


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(255))


class ModelTagRow(Base):
    __tablename__ = "model_version_tags"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RegisteredModelTagRow(Base):
    __tablename__ = "registered_model_tags"

    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SigningKeyRow(Base):
    """A project's Ed25519 key: the private half wrapped by the master key."""

    __tablename__ = "signing_keys"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(80))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    wrapped_private: Mapped[bytes] = mapped_column(LargeBinary(64))
    key_version: Mapped[int] = mapped_column(Integer)
    required: Mapped[int] = mapped_column(Integer, default=0)
    """1: loading an unsigned version of this project is refused."""
    created_at: Mapped[int] = mapped_column(BigInteger)
