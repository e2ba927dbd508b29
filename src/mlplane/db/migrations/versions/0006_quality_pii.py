"""Quality contracts, PII reports, derived versions, chunk liveness for garbage collection.

Revision ID: 0006_quality_pii
Revises: 0005_file_profiles
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_quality_pii"
down_revision = "0005_file_profiles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_versions") as batch:
        batch.add_column(sa.Column("contract", sa.Text(), nullable=True))
        batch.add_column(sa.Column("quality", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pii_policy", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("pii_unhandled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("derived_from", sa.String(300), nullable=True))
        batch.add_column(sa.Column("derivation", sa.Text(), nullable=True))
    with op.batch_alter_table("dataset_files") as batch:
        batch.add_column(sa.Column("pii", sa.Text(), nullable=True))
    with op.batch_alter_table("chunks") as batch:
        batch.add_column(sa.Column("seen_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chunks") as batch:
        batch.drop_column("seen_at")
    with op.batch_alter_table("dataset_files") as batch:
        batch.drop_column("pii")
    with op.batch_alter_table("dataset_versions") as batch:
        for name in (
            "derivation",
            "derived_from",
            "pii_unhandled",
            "pii_policy",
            "quality",
            "contract",
        ):
            batch.drop_column(name)
