"""JSON ↔ entities for the HTTP transport (the server sends dataclasses as orjson dicts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlplane._json import float_in, float_out
from mlplane.datasets.entities import (
    AddResult,
    DatasetFile,
    DatasetLineage,
    DatasetVersion,
    LineageRun,
)
from mlplane.registry.entities import ModelFile, ModelLineage, ModelVersion, RegisteredModel
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


# -- datasets ------------------------------------------------------------------------------------


def _text(obj: Any) -> str:
    import orjson

    return orjson.dumps(obj).decode()


def dataset_version(d: dict[str, Any]) -> DatasetVersion:
    from mlplane.datasets import profile as profile_mod
    from mlplane.datasets.contracts import ContractReport
    from mlplane.datasets.pii import PiiReport

    files = [
        DatasetFile(
            path=f["path"],
            size=f["size"],
            digest=f["digest"],
            profile=profile_mod.from_json(_text(f["profile"])) if f.get("profile") else None,
            pii=PiiReport.from_json(_text(f["pii"])) if f.get("pii") else None,
        )
        for f in d.get("files", [])
    ]
    return DatasetVersion(
        **{k: v for k, v in d.items() if k not in ("files", "quality")},
        files=files,
        quality=ContractReport.from_json(_text(d["quality"])) if d.get("quality") else None,
    )


def add_result(d: dict[str, Any]) -> AddResult:
    return AddResult(**{**d, "version": dataset_version(d["version"])})


def lineage(d: dict[str, Any]) -> DatasetLineage:
    return DatasetLineage(
        version=dataset_version(d["version"]),
        derived_from=d.get("derived_from"),
        derived=list(d.get("derived", [])),
        runs=[LineageRun(**r) for r in d.get("runs", [])],
        models=list(d.get("models", [])),
    )


# -- model registry ------------------------------------------------------------------------------


def model_version(d: dict[str, Any]) -> ModelVersion:
    return ModelVersion(**{**d, "files": [ModelFile(**f) for f in d["files"]]})


def registered_model(d: dict[str, Any]) -> RegisteredModel:
    from mlplane.registry.policy import parse_policy

    pol = d["policy"]
    pol = {**pol, "rules": [f"{r['metric']} {r['op']} {r['value']}" for r in pol.get("rules", [])]}
    return RegisteredModel(**{**d, "policy": parse_policy(pol)})


def model_lineage(d: dict[str, Any]) -> ModelLineage:
    return ModelLineage(**{**d, "version": model_version(d["version"])})
