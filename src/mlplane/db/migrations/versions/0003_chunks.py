"""Chunk store: encrypted, compressed, de-duplicated chunks and their wrapped keys.

Revision ID: 0003_chunks
Revises: 0002_inputs_audit
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_chunks"
down_revision = "0002_inputs_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chunks",
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("blob", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("stored_size", sa.BigInteger(), nullable=False),
        sa.Column("compressed", sa.Boolean(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(length=64), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_chunks")),
    )


def downgrade() -> None:
    op.drop_table("chunks")
