"""The fluent API over the embedded store and over HTTP."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

import mlplane
from mlplane import errors
from tests.conftest import ServerProcess


@pytest.fixture(params=["embedded", "http"])
def uri(request: pytest.FixtureRequest) -> str | None:
    if request.param == "http":
        srv: ServerProcess = request.getfixturevalue("server")
        mlplane.set_tracking_uri(srv.url)
        return srv.url
    return None


def test_run_context_manager_logs_everything(uri: str | None, tmp_path: Path, unique: str) -> None:
    mlplane.set_experiment(f"fluent-{unique}")
    f = tmp_path / "report.txt"
    f.write_text("ok")
    with mlplane.start_run("train", tags={"team": "ml"}) as run:
        mlplane.log_params({"lr": 0.01, "epochs": 3})
        for step in range(100):
            mlplane.log_metric("loss", 1.0 / (step + 1), step=step)
        mlplane.log_metrics({"acc": 0.9, "f1": 0.8})
        mlplane.set_tag("stage", "dev")
        mlplane.log_artifact(f)
        mlplane.log_dict({"a": 1}, "cfg.json")
        mlplane.log_input("transactions", version="3", context="training")
        mlplane.set_note("trained on **v3**")
        with mlplane.start_run("child", nested=True) as child:
            mlplane.log_metric("inner", 1.0)
    assert mlplane.active_run() is None
    got = mlplane.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.01", "epochs": "3"}
    assert got.data.metrics["loss"] == pytest.approx(0.01) and got.data.metrics["acc"] == 0.9
    assert got.data.tags["team"] == "ml" and got.data.tags["stage"] == "dev"
    assert "mlplane.python.version" in got.data.tags and "mlplane.hostname" in got.data.tags
    assert got.inputs[0].name == "transactions"
    assert mlplane.get_run(child.run_id).info.parent_run_id == run.run_id
    arts = {a.path for a in mlplane.fluent.client().list_artifacts(run.run_id, recursive=True)}
    assert {"report.txt", "cfg.json", "mlplane/requirements.txt"} <= arts

    df = mlplane.search_runs(filter_string="metrics.acc > 0.5", order_by=["metrics.acc DESC"])
    assert list(df["run_id"]) == [run.run_id]
    assert df.loc[0, "params.lr"] == "0.01" and df.loc[0, "metrics.loss"] == pytest.approx(0.01)


def test_failed_block_marks_run_failed(uri: str | None, unique: str) -> None:
    mlplane.set_experiment(f"fail-{unique}")
    with pytest.raises(RuntimeError), mlplane.start_run() as run:
        raise RuntimeError("boom")
    assert mlplane.get_run(run.run_id).info.status == "FAILED"


def test_second_run_needs_nested(unique: str) -> None:
    mlplane.set_experiment(f"nest-{unique}")
    with mlplane.start_run(), pytest.raises(errors.InvalidInput, match="nested=True"):
        mlplane.start_run()


def test_seed_everything_is_recorded(unique: str) -> None:
    mlplane.set_experiment(f"seed-{unique}")
    with mlplane.start_run() as run:
        mlplane.seed_everything(7)
        a = (random.random(), float(np.random.rand()))
        mlplane.seed_everything(7)
        assert (random.random(), float(np.random.rand())) == a
    assert mlplane.get_run(run.run_id).data.tags["mlplane.seed"] == "7"


def test_system_metrics_are_sampled(unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mlplane.set_tracking_uri(None)
    monkeypatch.setenv("MLPLANE_SYSTEM_METRICS_INTERVAL_S", "0.05")
    mlplane.set_experiment(f"sys-{unique}")
    with mlplane.start_run(log_system_metrics=True) as run:
        import time

        time.sleep(0.3)
    metrics = mlplane.get_run(run.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/memory_usage_megabytes" in metrics
