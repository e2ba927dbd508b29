"""JSON ↔ entities for the HTTP transport (the server sends dataclasses as orjson dicts)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mlplane.tracking.entities import (
    ArtifactInfo,
    Experiment,
    ExperimentPage,
    Metric,
    Run,
    RunData,
    RunInfo,
    RunInput,
    RunPage,
)

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def float_out(value: float) -> float | str:
    """A metric value for JSON: non-finite values travel as strings."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def float_in(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        return _NONFINITE.get(value, math.nan) if value in _NONFINITE else float(value)
    return float(value)


def metrics_columns(points: Sequence[Metric]) -> dict[str, list[Any]]:
    keys, values, timestamps, steps = [], [], [], []
    for k, v, ts, step in points:
        keys.append(k)
        values.append(v if (v - v == 0) else float_out(v))
        timestamps.append(ts)
        steps.append(step)
    return {"key": keys, "value": values, "timestamp": timestamps, "step": steps}


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
