"""Rows of the serving domain: deployments, their history and rollouts, and what the
inference workers report (traffic windows, feedback, captured payloads, liveness)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mlplane.db.base import Base


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(100))
    model_name: Mapped[str] = mapped_column(String(250))
    model_ref: Mapped[str] = mapped_column(String(300))
    """What the deployment follows, as asked (``fraud@champion``): a promotion moves that alias."""
    routing: Mapped[str] = mapped_column(Text)
    """JSON :class:`~mlplane.serving.entities.Routing`: variants, shadow, sticky header."""
    config: Mapped[str] = mapped_column(Text)
    """JSON :class:`~mlplane.serving.entities.DeploymentConfig`."""
    generation: Mapped[int] = mapped_column(Integer, default=1)
    """Bumped by every change; inference workers poll it to pick changes up."""
    created_at: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[int] = mapped_column(BigInteger)
    updated_by: Mapped[str] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("project_id", "name"),)


class DeploymentEventRow(Base):
    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    generation: Mapped[int] = mapped_column(Integer)
    time: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(40))
    routing: Mapped[str] = mapped_column(Text)
    """The routing in force after the event: what a rollback returns to."""
    details: Mapped[str] = mapped_column(Text, default="{}")


class RolloutRow(Base):
    __tablename__ = "deployment_rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    """running, promoted, rolled_back, blocked (promotion refused) or aborted."""
    stable_version: Mapped[int] = mapped_column(Integer)
    canary_version: Mapped[int] = mapped_column(Integer)
    canary_ref: Mapped[str] = mapped_column(String(300))
    promote_alias: Mapped[str | None] = mapped_column(String(100), nullable=True)
    steps: Mapped[str] = mapped_column(Text)
    step_index: Mapped[int] = mapped_column(Integer, default=0)
    interval_s: Mapped[float] = mapped_column(Float)
    thresholds: Mapped[str] = mapped_column(Text)
    failure_limit: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    checks: Mapped[str] = mapped_column(Text, default="[]")
    step_started_at: Mapped[int] = mapped_column(BigInteger)
    next_check_at: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[int] = mapped_column(BigInteger)
    started_by: Mapped[str] = mapped_column(String(255))
    started_as: Mapped[str] = mapped_column(Text, default="{}")
    """JSON of the starter's principal (name, roles, source) at the start: the promotion acts
    on their behalf, with no more than they held then and hold now."""
    ended_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")


class StatsWindowRow(Base):
    __tablename__ = "deployment_stats"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    """``live`` (answered the caller) or ``shadow`` (mirrored, answer discarded)."""
    worker: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[int] = mapped_column(BigInteger)
    window_end: Mapped[int] = mapped_column(BigInteger)
    stats: Mapped[str] = mapped_column(Text)
    """JSON :class:`~mlplane.serving.stats.WindowStats`."""

    __table_args__ = (Index("ix_deployment_stats_window", "deployment_id", "window_end"),)


class FeedbackRow(Base):
    __tablename__ = "deployment_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    request_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    label: Mapped[str] = mapped_column(Text)
    """JSON: the ground truth (or outcome) the caller reported."""
    prediction: Mapped[str | None] = mapped_column(Text, nullable=True)
    time: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(255))

    __table_args__ = (UniqueConstraint("deployment_id", "request_id"),)


class CaptureFileRow(Base):
    __tablename__ = "deployment_captures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    hour: Mapped[str] = mapped_column(String(13))
    """The partition: UTC hour as ``YYYY-MM-DDTHH``."""
    chunks: Mapped[str] = mapped_column(Text)
    """JSON list of [digest, size]: the Parquet file as encrypted chunks."""
    rows: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)
    first_time: Mapped[int] = mapped_column(BigInteger)
    last_time: Mapped[int] = mapped_column(BigInteger)
    worker: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_deployment_captures_hour", "deployment_id", "hour"),)


class ServingWorkerRow(Base):
    __tablename__ = "serving_workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(Text, default="{}")
    """JSON: what the worker has loaded (deployment -> versions, ready, cold starts)."""
