"""MLflow 3's logged models through the stock client: log_model, load_model, the model API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

mlflow = pytest.importorskip("mlflow")
np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")


def _fitted() -> tuple[Any, Any]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return LogisticRegression().fit(x, y), x


def test_sklearn_log_model_and_load_back(unique: str, tmp_path: Path) -> None:
    model, x = _fitted()
    mlflow.set_experiment(f"mlflow-lm-{unique}")
    with mlflow.start_run() as run:
        mlflow.log_param("C", 1.0)
        # Pinned requirements: no subprocess to infer them, the model logs the same.
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    assert info.model_id.startswith("m-") and len(info.model_id) == 34
    assert info.model_uri == f"models:/{info.model_id}"

    want = model.predict(x)
    for uri in (f"runs:/{run.info.run_id}/model", info.model_uri):
        loaded = mlflow.pyfunc.load_model(uri)
        assert (np.asarray(loaded.predict(x)) == want).all(), uri
    assert (mlflow.sklearn.load_model(info.model_uri).predict(x) == want).all()

    client = mlflow.MlflowClient()
    logged = client.get_logged_model(info.model_id)
    assert logged.status == mlflow.entities.LoggedModelStatus.READY
    assert logged.source_run_id == run.info.run_id and logged.name == "model"
    assert logged.params["C"] == "1.0"  # the run's params are copied onto the model
    assert logged.artifact_location.endswith(f"/models/{info.model_id}/artifacts")
    files = {f.path for f in client.list_logged_model_artifacts(info.model_id)}
    assert {"MLmodel", "requirements.txt", "python_env.yaml"} <= files
    dl = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path))
    assert f"model_id: {info.model_id}" in (Path(dl) / "MLmodel").read_text()


def test_logged_model_api(unique: str) -> None:
    client = mlflow.MlflowClient()
    eid = client.create_experiment(f"mlflow-lm-api-{unique}")
    first = mlflow.initialize_logged_model(
        name="agent", model_type="agent", tags={"team": "risk"}, experiment_id=eid
    )
    assert first.status == mlflow.entities.LoggedModelStatus.PENDING
    second = mlflow.initialize_logged_model(name="other", experiment_id=eid, params={"k": "v"})

    client.set_logged_model_tags(first.model_id, {"stage": "dev", "team": "fraud"})
    client.delete_logged_model_tag(first.model_id, "stage")
    tags = client.get_logged_model(first.model_id).tags
    assert tags["team"] == "fraud" and "stage" not in tags

    done = mlflow.finalize_logged_model(first.model_id, "READY")
    assert done.status == mlflow.entities.LoggedModelStatus.READY
    failed = client.finalize_logged_model(second.model_id, "FAILED")
    assert failed.status == mlflow.entities.LoggedModelStatus.FAILED

    by_name = mlflow.search_logged_models(
        experiment_ids=[eid], filter_string="name = 'agent'", output_format="list"
    )
    assert [m.model_id for m in by_name] == [first.model_id]
    by_param = mlflow.search_logged_models(
        experiment_ids=[eid], filter_string="params.k = 'v'", output_format="list"
    )
    assert [m.model_id for m in by_param] == [second.model_id]
    ordered = mlflow.search_logged_models(
        experiment_ids=[eid],
        order_by=[{"field_name": "name", "ascending": True}],
        output_format="list",
    )
    assert [m.name for m in ordered] == ["agent", "other"]
    paged = client.search_logged_models(experiment_ids=[eid], max_results=1)
    assert len(paged) == 1 and paged.token
    rest = client.search_logged_models(experiment_ids=[eid], max_results=1, page_token=paged.token)
    assert {paged[0].model_id, rest[0].model_id} == {first.model_id, second.model_id}

    client.delete_logged_model(second.model_id)
    with pytest.raises(mlflow.exceptions.MlflowException, match="does not exist"):
        client.get_logged_model(second.model_id)
    remaining = mlflow.search_logged_models(experiment_ids=[eid], output_format="list")
    assert [m.model_id for m in remaining] == [first.model_id]
