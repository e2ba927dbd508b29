"""Deployments: traffic splits and their history, rollouts, the traffic windows, feedback
and captured payloads the inference workers report, and the workers themselves; API
tokens that may call one deployment only.

Revision ID: 0013_deployments
Revises: 0012_audit_chain
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_deployments"
down_revision = "0012_audit_chain"
branch_labels = None
depends_on = None


def _cascade(column: str, table: str, target: str = "deployments") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("model_name", sa.String(length=250), nullable=False),
        sa.Column("model_ref", sa.String(length=300), nullable=False),
        sa.Column("routing", sa.Text(), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_deployments_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_deployments_project_id_name")),
    )
    op.create_table(
        "deployment_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("routing", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        _cascade("deployment_id", "deployment_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_events")),
    )
    op.create_index(
        op.f("ix_deployment_events_deployment_id"), "deployment_events", ["deployment_id"]
    )
    op.create_table(
        "deployment_rollouts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stable_version", sa.Integer(), nullable=False),
        sa.Column("canary_version", sa.Integer(), nullable=False),
        sa.Column("canary_ref", sa.String(length=300), nullable=False),
        sa.Column("promote_alias", sa.String(length=100), nullable=True),
        sa.Column("steps", sa.Text(), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("interval_s", sa.Float(), nullable=False),
        sa.Column("thresholds", sa.Text(), nullable=False),
        sa.Column("failure_limit", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("checks", sa.Text(), nullable=False),
        sa.Column("step_started_at", sa.BigInteger(), nullable=False),
        sa.Column("next_check_at", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("started_by", sa.String(length=255), nullable=False),
        sa.Column("started_as", sa.Text(), nullable=False),
        sa.Column("ended_at", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        _cascade("deployment_id", "deployment_rollouts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_rollouts")),
    )
    op.create_index(
        op.f("ix_deployment_rollouts_deployment_id"), "deployment_rollouts", ["deployment_id"]
    )
    op.create_table(
        "deployment_stats",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("window_end", sa.BigInteger(), nullable=False),
        sa.Column("stats", sa.Text(), nullable=False),
        _cascade("deployment_id", "deployment_stats"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_stats")),
    )
    op.create_index(
        "ix_deployment_stats_window", "deployment_stats", ["deployment_id", "window_end"]
    )
    op.create_table(
        "deployment_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("prediction", sa.Text(), nullable=True),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        _cascade("deployment_id", "deployment_feedback"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_feedback")),
        sa.UniqueConstraint(
            "deployment_id",
            "request_id",
            name=op.f("uq_deployment_feedback_deployment_id_request_id"),
        ),
    )
    op.create_table(
        "deployment_captures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.String(length=13), nullable=False),
        sa.Column("chunks", sa.Text(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("first_time", sa.BigInteger(), nullable=False),
        sa.Column("last_time", sa.BigInteger(), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        _cascade("deployment_id", "deployment_captures"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_captures")),
    )
    op.create_index("ix_deployment_captures_hour", "deployment_captures", ["deployment_id", "hour"])
    op.add_column("api_tokens", sa.Column("deployment", sa.String(length=100), nullable=True))
    op.create_table(
        "serving_workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_serving_workers")),
    )


def downgrade() -> None:
    op.drop_table("serving_workers")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("deployment")
    op.drop_index("ix_deployment_captures_hour", table_name="deployment_captures")
    op.drop_table("deployment_captures")
    op.drop_table("deployment_feedback")
    op.drop_index("ix_deployment_stats_window", table_name="deployment_stats")
    op.drop_table("deployment_stats")
    op.drop_index(op.f("ix_deployment_rollouts_deployment_id"), table_name="deployment_rollouts")
    op.drop_table("deployment_rollouts")
    op.drop_index(op.f("ix_deployment_events_deployment_id"), table_name="deployment_events")
    op.drop_table("deployment_events")
    op.drop_table("deployments")
