"""JSON ↔ entities for the HTTP transport (the server sends dataclasses as orjson dicts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlplane._json import float_in, float_out
from mlplane.tracking.entities import (
    ArtifactInfo,
    Experiment,
    ExperimentPage,
    Metric,
    MetricColumns,
    Run,
    RunData,
    RunInfo,
    RunInput,
    RunPage,
)


def metrics_columns(points: Sequence[Metric] | MetricColumns) -> dict[str, list[Any]]:
    cols = points if isinstance(points, MetricColumns) else MetricColumns.from_points(points)
    values: list[Any] = list(cols.value)
    total = sum(values) if all(type(v) is float for v in values) else None
    if total is None or total - total != 0:  # a non-number or a non-finite value somewhere
        values = [float_out(v) for v in values]
    return {
        "key": list(cols.key),
        "value": values,
        "timestamp": list(cols.timestamp),
        "step": list(cols.step),
    }


def experiment(d: dict[str, Any]) -> Experiment:
    return Experiment(**d)


def experiment_page(d: dict[str, Any]) -> ExperimentPage:
    return ExperimentPage([experiment(e) for e in d["experiments"]], d.get("next_page_token"))


def run_info(d: dict[str, Any]) -> RunInfo:
    return RunInfo(**d)


def run(d: dict[str, Any]) -> Run:
    data = d["data"]
    return Run(
        info=run_info(d["info"]),
        data=RunData(
            params=data["params"],
            metrics={k: float_in(v) for k, v in data["metrics"].items()},
            tags=data["tags"],
        ),
        inputs=[RunInput(**i) for i in d.get("inputs", [])],
    )


def run_page(d: dict[str, Any]) -> RunPage:
    return RunPage([run(r) for r in d["runs"]], d.get("next_page_token"))


def artifact(d: dict[str, Any]) -> ArtifactInfo:
    return ArtifactInfo(**d)


def histories(d: dict[str, dict[str, list[Any]]]) -> dict[str, list[Metric]]:
    return {
        key: [
            Metric(key, float_in(v), ts, step)
            for v, ts, step in zip(cols["value"], cols["timestamp"], cols["step"], strict=True)
        ]
        for key, cols in d.items()
    }
