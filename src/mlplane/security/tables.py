"""Rows of the security domain: identities, their project roles, API tokens, and the
hash-chained audit log with its head, signed checkpoints and signing keys."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from mlplane.db.base import Base


class AuditEventRow(Base):
    """One link of the audit chain; ``seq`` is assigned under the chain-head lock, not by
    the database, so it is gap-free (a rolled-back PostgreSQL sequence value would leave
    a hole indistinguishable from a deleted event)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    time: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(500))
    project_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String(100), default="")
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_events_project_time", "project_id", "time"),)


class AuditChainHeadRow(Base):
    """The single row (``id`` 1) holding the newest link: writers lock it to append."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpointRow(Base):
    """A signed statement that the chain reached ``hash`` at ``seq``."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    time: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(80))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))


class AuditKeyRow(Base):
    """The platform's Ed25519 checkpoint key: the private half wrapped by the master key."""

    __tablename__ = "audit_keys"

    key_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    wrapped_private: Mapped[bytes] = mapped_column(LargeBinary(64))
    key_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(BigInteger)


class IdentityRow(Base):
    """A user or a service account; the name is what audit events and run owners show."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    is_platform_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(255))


class IdentityRoleRow(Base):
    """One project role of an identity. Keyed by project name (``*``: every project), the
    key :attr:`Principal.roles` uses, so a role can be granted before the project exists."""

    __tablename__ = "identity_roles"

    identity_id: Mapped[int] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True
    )
    project: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))


class ApiTokenRow(Base):
    """An API token: only its SHA-256 is kept (tokens are 256-bit random, so a fast hash
    is enough); ``project`` and ``role_cap`` narrow what the identity may do with it."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        ForeignKey("identities.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255), default="")
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    project: Mapped[str | None] = mapped_column(String(255), nullable=True)
    role_cap: Mapped[str | None] = mapped_column(String(20), nullable=True)
    deployment: Mapped[str | None] = mapped_column(String(100), nullable=True)
    """When set, the token may only call this deployment of ``project`` (role predictor)."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_used_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
