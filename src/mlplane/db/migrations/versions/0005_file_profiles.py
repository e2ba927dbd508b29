"""Profiles of table files in dataset versions.

Revision ID: 0005_file_profiles
Revises: 0004_datasets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_file_profiles"
down_revision = "0004_datasets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_files") as batch:
        batch.add_column(sa.Column("profile", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dataset_files") as batch:
        batch.drop_column("profile")
