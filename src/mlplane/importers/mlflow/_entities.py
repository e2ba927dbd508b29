"""What an MLflow store holds, as read by any :class:`~._source.MlflowSource`.

Plain frozen records, independent of where they were read from (REST, a file
store, a SQL database), so the import use case has one shape to work with.
Times are milliseconds since the epoch, as MLflow keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
"""MLflow's run statuses; the file store keeps them as 1-based indices into this tuple."""


@dataclass(frozen=True, slots=True)
class SrcExperiment:
    experiment_id: str
    name: str
    lifecycle_stage: str = "active"
    artifact_location: str = ""
    creation_time: int | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        return self.lifecycle_stage == "deleted"


@dataclass(frozen=True, slots=True)
class SrcDatasetInput:
    """A dataset a run read (``mlflow.log_input``)."""

    name: str
    digest: str = ""
    source_type: str = ""
    source: str = ""
    context: str = ""


@dataclass(frozen=True, slots=True)
class SrcRun:
    run_id: str
    experiment_id: str
    name: str
    status: str
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metric_keys: tuple[str, ...] = ()
    inputs: tuple[SrcDatasetInput, ...] = ()

    @property
    def deleted(self) -> bool:
        return self.lifecycle_stage == "deleted"

    @property
    def parent_run_id(self) -> str | None:
        return self.tags.get("mlflow.parentRunId") or None


@dataclass(frozen=True, slots=True)
class SrcModel:
    """A registered model, with its aliases (alias → MLflow version number)."""

    name: str
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SrcModelVersion:
    name: str
    version: str
    source: str
    """Where the model files are: ``models:/m-…``, ``runs:/…/path``, or an artifact URI."""
    run_id: str | None = None
    status: str = "READY"
    description: str = ""
    creation_time: int | None = None
    stage: str = ""
    model_id: str | None = None
    storage_location: str = ""
    """The resolved artifact URI of the files, when the store recorded one."""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SrcFile:
    """A file under an artifact URI: its path relative to that URI, and its size if known."""

    path: str
    size: int | None = None


def status_name(value: object) -> str:
    """A run status as its name, whether stored as a name or as MLflow's enum number."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        index = int(value) - 1
        return RUN_STATUSES[index] if 0 <= index < len(RUN_STATUSES) else "FINISHED"
    text = str(value or "RUNNING").upper()
    return text if text in RUN_STATUSES else "FINISHED"
