"""What MLflow's model registry API needs: registered-model tags, version stage and source.

Revision ID: 0009_mlflow_registry
Revises: 0008_mlflow
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_mlflow_registry"
down_revision = "0008_mlflow"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registered_model_tags",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["registered_models.id"],
            name=op.f("fk_registered_model_tags_model_id_registered_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "key", name=op.f("pk_registered_model_tags")),
    )
    # batch mode: SQLite rebuilds the table; server defaults fill the existing rows.
    with op.batch_alter_table("registered_models") as batch:
        batch.add_column(sa.Column("version_seq", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("updated_at", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("stage", sa.String(length=20), nullable=False, server_default="None")
        )
        batch.add_column(sa.Column("source", sa.Text(), nullable=True))
        batch.add_column(sa.Column("logged_model_id", sa.String(length=64), nullable=True))
    # Models registered before this revision: their numbers so far are taken.
    op.execute(
        "UPDATE registered_models SET version_seq = COALESCE("
        "(SELECT MAX(version) FROM model_versions "
        "WHERE model_versions.model_id = registered_models.id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        for column in ("logged_model_id", "source", "stage", "updated_at"):
            batch.drop_column(column)
    with op.batch_alter_table("registered_models") as batch:
        batch.drop_column("version_seq")
    op.drop_table("registered_model_tags")
