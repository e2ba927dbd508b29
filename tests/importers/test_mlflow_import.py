"""Imports from a real MLflow (server over REST, its SQLite database, a file store) checked
object by object against what the stock MLflow client logged."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

import mlplane.registry
from mlplane.cli.main import app
from mlplane.client import Client
from mlplane.importers.mlflow import (
    TAG_DONE,
    TAG_SOURCE_ID,
    MlflowImport,
    RestSource,
    SqlSource,
)
from mlplane.tracking.entities import ViewType
from tests.importers.conftest import MlflowWorld

pytestmark = pytest.mark.slow
BASE_TS = 1_700_000_000_000


def _norm(points: Any) -> list[tuple[float | None, int, int]]:
    return [(None if math.isnan(v) else v, int(ts), int(step)) for v, ts, step in points]


def check_store(c: Client, expected: dict[str, Any], *, dedupe: bool = False) -> None:
    """Everything the driver logged is in ``c``'s store, as logged."""
    exp = c.get_experiment_by_name("exp-a")
    gone = c.get_experiment_by_name("exp-gone")
    assert exp is not None and gone is not None
    assert exp.tags["team"] == "fraud"
    assert exp.tags[TAG_SOURCE_ID] == expected["experiments"]["exp-a"]
    assert gone.lifecycle_stage == "deleted"
    runs = {
        r.data.tags[TAG_SOURCE_ID]: r
        for r in c.search_all_runs([exp.experiment_id, gone.experiment_id], view_type=ViewType.ALL)
    }
    assert set(runs) == set(expected["runs"])
    assert all(r.data.tags[TAG_DONE] == "true" for r in runs.values())
    for source_id, want in expected["runs"].items():
        assert runs[source_id].info.run_name == want["name"]
    parent_src = expected["model"]["run_id"]
    parent = runs[parent_src]
    assert parent.data.params == {"n_estimators": "10", "depth": "3"}
    assert parent.data.tags["stage"] == "dev"
    assert parent.info.status == "FINISHED"
    histories = c.get_metric_histories(parent.info.run_id)
    for key, points in expected["runs"][parent_src]["metrics"].items():
        got = _norm((m.value, m.timestamp, m.step) for m in histories[key])
        if dedupe:  # MLflow's file store repeats a run's last points when it logs a model
            got = list(dict.fromkeys(got))
        assert got == _norm(points), key
    [inp] = parent.inputs
    assert (inp.kind, inp.name, inp.context) == ("dataset", "iris", "training")
    assert c.read_artifact(parent.info.run_id, "notes.txt") == b"hello from mlflow"
    assert json.loads(c.read_artifact(parent.info.run_id, "plots/data.json")) == {
        "a": 1,
        "b": [1, 2],
    }
    assert c.read_artifact(parent.info.run_id, "bin/blob.bin") == bytes(range(256)) * 64
    for source_id, want in expected["runs"].items():
        run = runs[source_id]
        if "parent" in want:
            assert run.info.parent_run_id == parent.info.run_id
            assert (run.info.status, run.info.end_time) == ("FAILED", BASE_TS + 99)
            assert c.get_metric_history(run.info.run_id, "loss")[0].step == 3
        if want.get("deleted"):
            assert run.info.lifecycle_stage == "deleted"
    _check_models(expected["model"], parent.info.run_id)


def _check_models(model: dict[str, Any], run_id: str) -> None:
    champion = mlplane.registry.get("iris-clf@champion")
    challenger = mlplane.registry.get("iris-clf@challenger")
    assert champion.tags[TAG_SOURCE_ID] == "iris-clf/1"
    assert challenger.tags[TAG_SOURCE_ID] == f"iris-clf/{model['versions'][1]}"
    assert champion.tags["validated"] == "yes"
    assert (champion.run_id, champion.flavor, champion.format) == (run_id, "sklearn", "skops")
    assert [s["name"] for s in champion.signature["inputs"]] == list(model["sample"][0])
    sample = pd.DataFrame(model["sample"])
    loaded = mlplane.registry.load("models:/iris-clf@champion")
    assert loaded.predict(sample).tolist() == model["predictions"]
    pickled = mlplane.registry.get("iris-pickle@1")
    assert (pickled.format, pickled.pickle, pickled.scan_verdict) == ("pickle", True, "safe")
    assert mlplane.registry.load("iris-pickle@1").predict(sample).tolist() == model["predictions"]


def test_import_from_a_server_then_again_imports_nothing(mlflow_world: MlflowWorld) -> None:
    with Client() as c:
        report = MlflowImport(c, RestSource(mlflow_world.url)).run()
        assert report.failures == []
        assert report.tallies["runs"].imported == 4
        assert report.tallies["model_versions"].imported == 3
        assert report.tallies["aliases"].imported == 2
        check_store(c, mlflow_world.expected)
        again = MlflowImport(c, RestSource(mlflow_world.url)).run()
        assert again.failures == []
        assert {k: t.imported for k, t in again.tallies.items() if t.imported} == {}
        assert again.tallies["runs"].skipped == 4
        assert again.tallies["model_versions"].skipped == 3
        check_store(c, mlflow_world.expected)


def test_import_from_the_servers_database(mlflow_world: MlflowWorld) -> None:
    source = SqlSource(mlflow_world.db_url, artifacts_root=mlflow_world.artifacts)
    with Client() as c:
        report = MlflowImport(c, source).run()
        assert report.failures == []
        check_store(c, mlflow_world.expected)
    source.close()


def test_import_from_a_file_store_with_the_cli(mlflow_world: MlflowWorld) -> None:
    result = CliRunner().invoke(
        app, ["import", "mlflow", "--from", str(mlflow_world.mlruns), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["failures"] == []
    assert report["tallies"]["runs"]["imported"] == 4
    with Client() as c:
        check_store(c, mlflow_world.expected_fs, dedupe=True)


class _Interrupt(Exception):
    pass


def test_an_interrupted_import_resumes(mlflow_world: MlflowWorld) -> None:
    target = mlflow_world.expected["model"]["run_id"]

    def hook(event: str, item: str) -> None:
        if event == "run.metrics" and item == target:
            raise _Interrupt

    with Client() as c:
        with pytest.raises(_Interrupt):
            MlflowImport(c, RestSource(mlflow_world.url), hook=hook).run()
        exp = c.get_experiment_by_name("exp-a")
        assert exp is not None
        [partial] = [
            r
            for r in c.search_all_runs([exp.experiment_id], view_type=ViewType.ALL)
            if r.data.tags.get(TAG_SOURCE_ID) == target
        ]
        assert TAG_DONE not in partial.data.tags
        report = MlflowImport(c, RestSource(mlflow_world.url)).run()
        assert report.failures == []
        assert report.tallies["runs"].imported >= 1
        check_store(c, mlflow_world.expected)
        ids = [
            r.info.run_id for r in c.search_all_runs([exp.experiment_id], view_type=ViewType.ALL)
        ]
        assert partial.info.run_id not in ids  # purged and redone, not duplicated


def test_dry_run_and_experiment_filter(mlflow_world: MlflowWorld) -> None:
    runner = CliRunner()
    args = ["import", "mlflow", "--from", mlflow_world.url, "--experiment", "exp-a", "--json"]
    dry = runner.invoke(app, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    tallies = json.loads(dry.stdout)["tallies"]
    assert (tallies["experiments"]["imported"], tallies["runs"]["imported"]) == (1, 3)
    assert tallies["model_versions"]["imported"] == 3
    with Client() as c:
        assert c.get_experiment_by_name("exp-a") is None
    real = runner.invoke(app, args)
    assert real.exit_code == 0, real.output
    assert json.loads(real.stdout)["tallies"]["runs"]["imported"] == 3
    with Client() as c:
        assert c.get_experiment_by_name("exp-gone") is None
        assert (
            c.get_experiment_by_name("Default") is None
            or not c.search_runs(
                [c.get_experiment_by_name("Default").experiment_id]  # type: ignore[union-attr]
            ).runs
        )
    assert mlplane.registry.get("iris-clf@champion").tags[TAG_SOURCE_ID] == "iris-clf/1"
