"""MLflow 3 logged models (tags, params, metrics, artifacts) and multipart artifact uploads.

Revision ID: 0008_mlflow
Revises: 0007_registry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_mlflow"
down_revision = "0007_registry"
branch_labels = None
depends_on = None

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _model_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["model_id"],
        ["logged_models.id"],
        name=op.f(f"fk_{table}_model_id_logged_models"),
        ondelete="CASCADE",
    )


def _key_value(table: str) -> None:
    op.create_table(
        table,
        sa.Column("model_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        _model_fk(table),
        sa.PrimaryKeyConstraint("model_id", "key", name=op.f(f"pk_{table}")),
    )


def upgrade() -> None:
    op.create_table(
        "logged_models",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("model_type", sa.String(length=500), nullable=False),
        sa.Column("source_run_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False),
        sa.Column("lifecycle_stage", sa.String(length=20), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("creation_time", sa.BigInteger(), nullable=False),
        sa.Column("last_update_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name=op.f("fk_logged_models_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logged_models")),
    )
    op.create_index(
        "ix_logged_models_experiment_created",
        "logged_models",
        ["experiment_id", "creation_time"],
        unique=False,
    )
    op.create_index("ix_logged_models_source_run", "logged_models", ["source_run_id"], unique=False)
    _key_value("logged_model_tags")
    _key_value("logged_model_params")
    op.create_table(
        "logged_model_metrics",
        sa.Column("id", _BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("model_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("value", sa.Float(precision=53), nullable=True),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("dataset_name", sa.String(length=500), nullable=False),
        sa.Column("dataset_digest", sa.String(length=100), nullable=False),
        _model_fk("logged_model_metrics"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logged_model_metrics")),
    )
    op.create_index(
        "ix_logged_model_metrics_model_key",
        "logged_model_metrics",
        ["model_id", "key"],
        unique=False,
    )
    op.create_table(
        "logged_model_artifacts",
        sa.Column("model_id", sa.String(length=40), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        _model_fk("logged_model_artifacts"),
        sa.PrimaryKeyConstraint("model_id", "path", name=op.f("pk_logged_model_artifacts")),
    )
    op.create_table(
        "artifact_uploads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner_kind", sa.String(length=10), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("num_parts", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifact_uploads")),
    )
    op.create_table(
        "artifact_upload_parts",
        sa.Column("upload_id", sa.String(length=40), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["artifact_uploads.id"],
            name=op.f("fk_artifact_upload_parts_upload_id_artifact_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", "part_number", name=op.f("pk_artifact_upload_parts")),
    )


def downgrade() -> None:
    for table in (
        "artifact_upload_parts",
        "artifact_uploads",
        "logged_model_artifacts",
        "logged_model_metrics",
        "logged_model_params",
        "logged_model_tags",
        "logged_models",
    ):
        op.drop_table(table)
