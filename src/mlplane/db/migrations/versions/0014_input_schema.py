"""A run's dataset inputs keep what MLflow clients send with them: the source type, the
schema and the profile (``mlflow.log_input`` computes both from the data).

Revision ID: 0014_input_schema
Revises: 0013_deployments
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_input_schema"
down_revision = "0013_deployments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_inputs") as batch:
        batch.add_column(sa.Column("source_type", sa.String(100), nullable=True))
        batch.add_column(sa.Column("schema", sa.Text(), nullable=True))
        batch.add_column(sa.Column("profile", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_inputs") as batch:
        batch.drop_column("profile")
        batch.drop_column("schema")
        batch.drop_column("source_type")
