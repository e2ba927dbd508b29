"""Rows of the tracking domain.

``metrics`` is the append-only history. It is the one table that grows into
the millions, so its rows are small: the run by its integer ``runs.seq`` and
the key by its interned ``metric_keys.id`` (about 2.5 times less space and
nearly twice the insert rate of text ids in the index). ``latest_metrics``
keeps one row per run and key (the value at the highest step) so search and
ordering never scan history. A NULL metric value means NaN (SQLite cannot
store NaN).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mlplane.db.base import Base


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    artifact_location: Mapped[str] = mapped_column(String(1000), default="")
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default="active")
    creation_time: Mapped[int] = mapped_column(BigInteger)
    last_update_time: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (UniqueConstraint("project_id", "name"),)


class ExperimentTagRow(Base):
    __tablename__ = "experiment_tags"

    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


_BIGINT_ID = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid


class RunRow(Base):
    __tablename__ = "runs"

    seq: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    name: Mapped[str] = mapped_column(String(250), default="")
    status: Mapped[str] = mapped_column(String(20))
    start_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default="active")
    user_id: Mapped[str] = mapped_column(String(255), default="")
    parent_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    artifact_uri: Mapped[str] = mapped_column(String(1000), default="")
    heartbeat_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    deleted_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        Index("ix_runs_experiment_stage_start", "experiment_id", "lifecycle_stage", "start_time"),
        Index("ix_runs_parent", "parent_run_id"),
        Index("ix_runs_status_heartbeat", "status", "heartbeat_at"),
    )


class ParamRow(Base):
    __tablename__ = "params"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_params_key", "key"),)


class TagRow(Base):
    __tablename__ = "tags"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_tags_key", "key"),)


class MetricKeyRow(Base):
    __tablename__ = "metric_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(250), unique=True)


class MetricRow(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True, autoincrement=True)
    run_seq: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)

    __table_args__ = (Index("ix_metrics_run_key_step", "run_seq", "key_id", "step"),)


class LatestMetricRow(Base):
    __tablename__ = "latest_metrics"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)

    __table_args__ = (Index("ix_latest_metrics_key_value", "key", "value"),)


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    digest: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class RunInputRow(Base):
    __tablename__ = "run_inputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(500))
    version: Mapped[str] = mapped_column(String(100), default="")
    digest: Mapped[str] = mapped_column(String(100), default="")
    source: Mapped[str] = mapped_column(String(1000), default="")
    context: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[int] = mapped_column(BigInteger)
    unhandled_pii: Mapped[bool] = mapped_column(Boolean, default=False)
    source_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    schema: Mapped[str | None] = mapped_column(Text, nullable=True)
    profile: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_run_inputs_run", "run_id"),
        Index("ix_run_inputs_name_version", "kind", "name", "version"),
    )


# -- MLflow 3 logged models ------------------------------------------------------------------
# A logged model is an experiment's model, usually made by a run (``source_run_id``, not a
# foreign key: purging the run leaves the model). Its files live in
# ``logged_model_artifacts`` exactly as a run's live in ``artifacts``.


class LoggedModelRow(Base):
    __tablename__ = "logged_models"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"))
    name: Mapped[str] = mapped_column(String(500))
    model_type: Mapped[str] = mapped_column(String(500), default="")
    source_run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    status_message: Mapped[str] = mapped_column(Text, default="")
    lifecycle_stage: Mapped[str] = mapped_column(String(20), default="active")
    created_by: Mapped[str] = mapped_column(String(255), default="")
    creation_time: Mapped[int] = mapped_column(BigInteger)
    last_update_time: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_logged_models_experiment_created", "experiment_id", "creation_time"),
        Index("ix_logged_models_source_run", "source_run_id"),
    )


class LoggedModelTagRow(Base):
    __tablename__ = "logged_model_tags"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("logged_models.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LoggedModelParamRow(Base):
    __tablename__ = "logged_model_params"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("logged_models.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LoggedModelMetricRow(Base):
    """A metric point linked to a model (MLflow's ``Metric.model_id``), newest per key wins."""

    __tablename__ = "logged_model_metrics"

    id: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("logged_models.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    value: Mapped[float | None] = mapped_column(Float(precision=53), nullable=True)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int] = mapped_column(BigInteger)
    run_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    dataset_name: Mapped[str] = mapped_column(String(500), default="")
    dataset_digest: Mapped[str] = mapped_column(String(100), default="")

    __table_args__ = (Index("ix_logged_model_metrics_model_key", "model_id", "key"),)


class LoggedModelArtifactRow(Base):
    __tablename__ = "logged_model_artifacts"

    model_id: Mapped[str] = mapped_column(
        ForeignKey("logged_models.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1000), primary_key=True)
    digest: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ArtifactUploadRow(Base):
    """A multipart upload in progress: where the file goes once its parts are complete."""

    __tablename__ = "artifact_uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_kind: Mapped[str] = mapped_column(String(10))  # "run" or "model"
    owner_id: Mapped[str] = mapped_column(String(40))
    path: Mapped[str] = mapped_column(String(1000))
    num_parts: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[int] = mapped_column(BigInteger)


class ArtifactUploadPartRow(Base):
    __tablename__ = "artifact_upload_parts"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("artifact_uploads.id", ondelete="CASCADE"), primary_key=True
    )
    part_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
