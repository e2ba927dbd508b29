"""Small chunks share pack blobs: a chunk row names its blob and, in a pack, its offset.

Revision ID: 0010_chunk_packs
Revises: 0009_mlflow_registry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_chunk_packs"
down_revision = "0009_mlflow_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.add_column(sa.Column("pack_offset", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.drop_column("pack_offset")
