"""Rows of the chunk store: what each stored chunk is and the key to read it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from mlplane.db.base import Base


class ChunkRow(Base):
    __tablename__ = "chunks"

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    """BLAKE3 of the plaintext: the chunk's identity, for de-duplication."""
    blob: Mapped[str] = mapped_column(String(80))
    """Digest of the stored (compressed, encrypted) object in the blob store: the chunk's
    own blob, or a pack that small chunks share."""
    pack_offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """Where the chunk starts in its pack (``stored_size`` bytes long); None for a blob
    of its own."""
    size: Mapped[int] = mapped_column(BigInteger)
    stored_size: Mapped[int] = mapped_column(BigInteger)
    compressed: Mapped[bool] = mapped_column(Boolean)
    key_version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary(64), nullable=True)
    """None once crypto-shredded: the chunk can never be read again."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """When an add last reused this chunk: garbage collection's grace period counts from it."""
