"""The stock MLflow client, unchanged, against ``mlplane server``; what it logs is the same
store mlplane's own SDK reads, and the other way round."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mlplane import Client
from mlplane.tracking.entities import Metric

mlflow = pytest.importorskip("mlflow")
MlflowException = pytest.importorskip("mlflow.exceptions").MlflowException


@pytest.fixture
def sdk(server: Any) -> Iterator[Client]:
    c = Client(uri=server.url)
    yield c
    c.close()


def _name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


def test_fluent_logging_is_visible_through_our_api(sdk: Client) -> None:
    name = _name("fluent")
    exp = mlflow.set_experiment(name)
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"depth": 3, "kernel": "rbf"})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "bad": float("nan")}, step=5)
        mlflow.set_tag("team", "risk")
        mlflow.set_tags({"stage": "dev"})
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("inner", 1.0)
    assert mlflow.active_run() is None

    ours = sdk.get_experiment_by_name(name)
    assert ours is not None and ours.experiment_id == exp.experiment_id
    run = sdk.get_run(parent.info.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "parent"
    assert run.data.params == {"lr": "0.1", "depth": "3", "kernel": "rbf"}
    assert run.data.metrics["loss"] == pytest.approx(1 / 3)
    assert math.isnan(run.data.metrics["bad"])
    assert run.data.tags["team"] == "risk" and run.data.tags["stage"] == "dev"
    assert [m.step for m in sdk.get_metric_history(parent.info.run_id, "loss")] == [0, 1, 2]
    kid = sdk.get_run(child.info.run_id)
    assert kid.info.parent_run_id == parent.info.run_id

    client = mlflow.MlflowClient()
    history = client.get_metric_history(parent.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    got = client.get_run(child.info.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert got.info.run_name == "child"
    # The MLflow UI finds a run's children with this filter.
    nested = client.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert [r.info.run_id for r in nested] == [child.info.run_id]


def test_our_runs_are_visible_to_mlflow(sdk: Client, mlflow_client: Any) -> None:
    eid = sdk.create_experiment(_name("ours"), tags={"owner": "sdk"})
    parent = sdk.create_run(eid, run_name="made-here")
    rid = parent.info.run_id
    sdk.log_batch(
        rid,
        metrics=[Metric("m", 0.5, 1000, 0), Metric("m", float("inf"), 1001, 1)],
        params={"p": "1"},
        tags={"t": "x"},
    )
    child = sdk.create_run(eid, run_name="kid", parent_run_id=rid)
    sdk.set_terminated(rid, "FINISHED")

    exp = mlflow_client.get_experiment(eid)
    assert exp.tags["owner"] == "sdk"
    run = mlflow_client.get_run(rid)
    assert (run.info.run_name, run.info.status) == ("made-here", "FINISHED")
    assert run.data.params == {"p": "1"} and run.data.metrics == {"m": math.inf}
    assert run.data.tags["t"] == "x" and run.data.tags["mlflow.runName"] == "made-here"
    assert [m.value for m in mlflow_client.get_metric_history(rid, "m")] == [0.5, math.inf]
    kid = mlflow_client.get_run(child.info.run_id)
    assert kid.data.tags["mlflow.parentRunId"] == rid


def test_search_runs_matches_our_sdk(sdk: Client, mlflow_client: Any) -> None:
    eid = mlflow_client.create_experiment(_name("search"))
    for i in range(6):
        run = mlflow_client.create_run(eid, run_name=f"run-{i}", tags={"parity": str(i % 2)})
        mlflow_client.log_param(run.info.run_id, "alpha", str(i / 10))
        mlflow_client.log_metric(run.info.run_id, "score", float(i), step=i)
        mlflow_client.set_terminated(run.info.run_id)
    cases: list[tuple[str, list[str]]] = [
        ("", ["start_time DESC"]),
        ("metrics.score >= 2 and tags.parity = '0'", ["metrics.score DESC"]),
        ("params.alpha LIKE '0.%' AND attributes.status = 'FINISHED'", ["params.alpha ASC"]),
        ("attributes.run_name IN ('run-1', 'run-4')", ["attributes.run_name"]),
        ("metrics.score < 1 OR metrics.score > 4", []),
    ]
    for filt, order in cases:
        theirs = [r.info.run_id for r in mlflow_client.search_runs([eid], filt, order_by=order)]
        ours = [r.info.run_id for r in sdk.search_runs([eid], filt, order_by=order).runs]
        assert theirs == ours, filt
        assert theirs, filt
    top = mlflow_client.search_runs([eid], "", order_by=["metrics.score DESC"], max_results=2)
    assert [r.info.run_name for r in top] == ["run-5", "run-4"]
    assert top.token is not None
    rest = mlflow_client.search_runs(
        [eid], "", order_by=["metrics.score DESC"], max_results=10, page_token=top.token
    )
    assert [r.info.run_name for r in rest] == ["run-3", "run-2", "run-1", "run-0"]

    frame = mlflow.search_runs(
        experiment_ids=[eid], filter_string="tags.parity = '1'", order_by=["metrics.score"]
    )
    assert list(frame["tags.mlflow.runName"]) == ["run-1", "run-3", "run-5"]
    assert list(frame["metrics.score"]) == [1.0, 3.0, 5.0]


def test_delete_and_restore_runs_and_experiments(mlflow_client: Any) -> None:
    from mlflow.entities import ViewType

    name = _name("lifecycle")
    eid = mlflow_client.create_experiment(name)
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.create_experiment(name)
    assert excinfo.value.error_code == "RESOURCE_ALREADY_EXISTS"
    run = mlflow_client.create_run(eid)
    rid = run.info.run_id

    mlflow_client.delete_run(rid)
    assert mlflow_client.get_run(rid).info.lifecycle_stage == "deleted"
    assert mlflow_client.search_runs([eid]) == []
    deleted = mlflow_client.search_runs([eid], run_view_type=ViewType.DELETED_ONLY)
    assert [r.info.run_id for r in deleted] == [rid]
    mlflow_client.restore_run(rid)
    assert [r.info.run_id for r in mlflow_client.search_runs([eid])] == [rid]

    mlflow_client.delete_experiment(eid)
    assert mlflow_client.get_experiment(eid).lifecycle_stage == "deleted"
    assert name not in {e.name for e in mlflow_client.search_experiments()}
    gone = mlflow_client.search_experiments(view_type=ViewType.DELETED_ONLY)
    assert name in {e.name for e in gone}
    with pytest.raises(MlflowException, match="deleted"):
        mlflow.set_experiment(name)
    mlflow_client.restore_experiment(eid)
    assert mlflow.set_experiment(name).experiment_id == eid

    mlflow_client.rename_experiment(eid, name + "-renamed")
    mlflow_client.set_experiment_tag(eid, "k", "v")
    mlflow_client.delete_experiment_tag(eid, "k")
    exp = mlflow_client.get_experiment_by_name(name + "-renamed")
    assert exp.experiment_id == eid and "k" not in exp.tags
    assert mlflow_client.get_experiment_by_name(name) is None

    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.get_run(uuid.uuid4().hex)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_param_rewrite_is_refused_like_mlflow(mlflow_client: Any) -> None:
    eid = mlflow_client.create_experiment(_name("params"))
    rid = mlflow_client.create_run(eid).info.run_id
    mlflow_client.log_param(rid, "x", "1")
    mlflow_client.log_param(rid, "x", "1")
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.log_param(rid, "x", "2")
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        mlflow_client.log_param(rid, "long", "v" * 6001)
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"


def test_default_experiment_without_set_experiment(sdk: Client) -> None:
    with mlflow.start_run() as run:
        mlflow.log_metric("x", 1.0)
    assert run.info.experiment_id == "0"
    assert mlflow.get_experiment("0").name == "Default"
    ours = sdk.get_run(run.info.run_id)
    default = sdk.get_experiment_by_name("Default")
    assert default is not None and ours.info.experiment_id == default.experiment_id


def test_dataset_inputs_through_the_client(mlflow_client: Any, sdk: Client) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    eid = mlflow_client.create_experiment(_name("inputs"))
    rid = mlflow_client.create_run(eid).info.run_id
    ds = Dataset("iris", "d1g3st", "local", '{"uri": "/tmp/iris.csv"}', schema="{}")
    mlflow_client.log_inputs(
        rid, [DatasetInput(ds, tags=[InputTag("mlflow.data.context", "training")])]
    )
    (got,) = mlflow_client.get_run(rid).inputs.dataset_inputs
    assert (got.dataset.name, got.dataset.digest, got.dataset.source_type) == (
        "iris",
        "d1g3st",
        "local",
    )
    assert got.tags[0].value == "training"
    (ours,) = sdk.get_run(rid).inputs
    assert (ours.kind, ours.name, ours.context) == ("dataset", "iris", "training")


def test_log_input_keeps_the_schema_and_profile_mlflow_computes(sdk: Client) -> None:
    import mlflow.data
    import pandas as pd

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    dataset = mlflow.data.from_pandas(frame, source="s3://bucket/frame.parquet", name="frame")
    mlflow.set_experiment(_name("log-input"))
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    (got,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert got.dataset.name == "frame" and got.dataset.digest == dataset.digest
    assert got.dataset.source_type == "s3"  # as the client said, not guessed
    assert json.loads(got.dataset.schema) == json.loads(dataset._to_mlflow_entity().schema)
    assert json.loads(got.dataset.profile) == {"num_rows": 3, "num_elements": 6}
    (ours,) = sdk.get_run(run.info.run_id).inputs
    assert ours.source_type == "s3" and '"a"' in ours.schema and ours.context == "training"
    searched = mlflow.search_runs([run.info.experiment_id], output_format="list")
    assert searched[0].inputs.dataset_inputs[0].dataset.profile == got.dataset.profile


def test_sklearn_autolog(sdk: Client) -> None:
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_experiment(_name("autolog"))
    mlflow.sklearn.autolog(silent=True)
    try:
        x, y = load_iris(return_X_y=True)
        with mlflow.start_run() as run:
            LogisticRegression(max_iter=300, C=0.5).fit(x, y)
    finally:
        mlflow.sklearn.autolog(disable=True)
    ours = sdk.get_run(run.info.run_id)
    assert ours.data.params["C"] == "0.5" and ours.data.params["max_iter"] == "300"
    assert 0.5 < ours.data.metrics["training_accuracy_score"] <= 1.0
    assert ours.data.tags["estimator_name"] == "LogisticRegression"
    assert ours.info.status == "FINISHED"
    # The model went out as an MLflow 3 logged model, linked to the run as its output.
    (output,) = mlflow.get_run(run.info.run_id).outputs.model_outputs
    model = mlflow.sklearn.load_model(f"models:/{output.model_id}")
    assert list(model.predict(x[:3])) == [0, 0, 0]
