"""Experiment tracking: experiments, runs, params, metrics, tags, artifacts, inputs."""

from mlplane.tracking.entities import (
    ArtifactInfo,
    Experiment,
    ExperimentPage,
    LifecycleStage,
    Metric,
    Run,
    RunData,
    RunInfo,
    RunInput,
    RunPage,
    RunStatus,
    ViewType,
)

__all__ = [
    "ArtifactInfo",
    "Experiment",
    "ExperimentPage",
    "LifecycleStage",
    "Metric",
    "Run",
    "RunData",
    "RunInfo",
    "RunInput",
    "RunPage",
    "RunStatus",
    "ViewType",
]
