"""The tracking domain's public nouns; frozen, so they cross layers safely."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)


class LifecycleStage(StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


class ViewType(StrEnum):
    ACTIVE_ONLY = "ACTIVE_ONLY"
    DELETED_ONLY = "DELETED_ONLY"
    ALL = "ALL"


class Metric(NamedTuple):
    """One metric point. ``timestamp`` is in milliseconds since the epoch."""

    key: str
    value: float
    timestamp: int
    step: int = 0


@dataclass(frozen=True, slots=True)
class MetricColumns:
    """Many metric points as columns: what the wire carries and the ingest fast path."""

    key: Sequence[str]
    value: Sequence[float]
    timestamp: Sequence[int]
    step: Sequence[int]

    @classmethod
    def from_points(cls, points: Sequence[Metric]) -> MetricColumns:
        if not points:
            return cls([], [], [], [])
        key, value, timestamp, step = zip(*points, strict=True)
        return cls(list(key), list(value), list(timestamp), list(step))

    def __len__(self) -> int:
        return len(self.key)


@dataclass(frozen=True, slots=True)
class Experiment:
    experiment_id: str
    name: str
    project: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    user_id: str
    artifact_uri: str
    parent_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunInput:
    """A reference to something a run read, e.g. a dataset version."""

    kind: str
    name: str
    version: str = ""
    digest: str = ""
    source: str = ""
    context: str = ""
    allow_pii: bool = False
    """Use a dataset version flagged with unhandled PII anyway (an audited decision)."""
    source_type: str = ""
    """Where the data came from, as MLflow names it (``local``, ``s3``, ``http``, ...)."""
    schema: str = ""
    """The data's schema as its client described it (MLflow: a JSON column spec)."""
    profile: str = ""
    """A short summary of the data (MLflow: JSON such as ``{"num_rows": 10}``)."""


@dataclass(frozen=True, slots=True)
class RunData:
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metric_points: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)
    """``(timestamp, step)`` of each latest metric value, where the store returned them (the
    MLflow API sends them with each run; not part of the /api/v1 run body)."""


@dataclass(frozen=True, slots=True)
class Run:
    info: RunInfo
    data: RunData
    inputs: list[RunInput] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.info.run_id


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    path: str
    is_dir: bool
    size: int | None = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[Run]
    next_page_token: str | None = None


@dataclass(frozen=True, slots=True)
class ExperimentPage:
    experiments: list[Experiment]
    next_page_token: str | None = None


TAG_NOTE = "mlplane.note"
TAG_PREFIX_SYSTEM = "mlplane."
"""Tags under this prefix are written by mlplane itself (context capture, notes)."""


class LoggedModelStatus(StrEnum):
    """MLflow 3's logged-model states: PENDING while its files upload, then READY or FAILED."""

    PENDING = "PENDING"
    READY = "READY"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class ModelMetric:
    """A metric point linked to a logged model, with the run and dataset it was measured on."""

    key: str
    value: float
    timestamp: int
    step: int = 0
    run_id: str | None = None
    dataset_name: str = ""
    dataset_digest: str = ""


@dataclass(frozen=True, slots=True)
class LoggedModel:
    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    status: str
    creation_time: int
    last_update_time: int
    model_type: str = ""
    source_run_id: str | None = None
    status_message: str = ""
    lifecycle_stage: str = "active"
    created_by: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[ModelMetric] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoggedModelPage:
    models: list[LoggedModel]
    next_page_token: str | None = None
