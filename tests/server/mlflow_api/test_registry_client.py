"""The stock MLflow client (``MlflowClient``, ``mlflow.register_model``, ``mlflow.pyfunc``)
against mlplane's registry on a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlplane
from mlplane import fluent
from tests.server.mlflow_api.test_registry_wire import log_run, mlflow_model_dir, model_name

__all__ = ["mlflow_model_dir"]  # the module-scoped fixture, shared with the wire tests


@pytest.fixture
def registry(server: Any) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=server.url, registry_uri=server.url)


def error_code(excinfo: pytest.ExceptionInfo[Any]) -> str:
    return str(excinfo.value.error_code)


def test_registered_models_through_the_client(registry: Any) -> None:
    from mlflow.exceptions import MlflowException

    name = model_name("client")
    rm = registry.create_registered_model(name, tags={"team": "risk"}, description="fraud")
    assert (rm.name, rm.description, rm.tags) == (name, "fraud", {"team": "risk"})
    with pytest.raises(MlflowException) as exc:
        registry.create_registered_model(name)
    assert error_code(exc) == "RESOURCE_ALREADY_EXISTS"

    registry.update_registered_model(name, description="scores transactions")
    registry.set_registered_model_tag(name, "tier", "1")
    registry.delete_registered_model_tag(name, "team")
    got = registry.get_registered_model(name)
    assert got.description == "scores transactions" and got.tags == {"tier": "1"}

    registry.rename_registered_model(name, name + "-v2")
    assert registry.get_registered_model(name + "-v2").tags == {"tier": "1"}
    with pytest.raises(MlflowException) as exc:
        registry.get_registered_model(name)
    assert error_code(exc) == "RESOURCE_DOES_NOT_EXIST"

    others = [registry.create_registered_model(f"{name}-{i}").name for i in range(3)]
    page = registry.search_registered_models(f"name LIKE '{name}-%'", max_results=2)
    assert len(page) == 2 and page.token
    rest = registry.search_registered_models(
        f"name LIKE '{name}-%'", max_results=2, page_token=page.token
    )
    assert [m.name for m in page] + [m.name for m in rest] == sorted([*others, name + "-v2"])
    assert not rest.token

    for n in [*others, name + "-v2"]:
        registry.delete_registered_model(n)
    assert registry.search_registered_models(f"name LIKE '{name}%'") == []


def test_versions_aliases_and_stages_through_the_client(
    registry: Any, server: Any, mlflow_model_dir: tuple[Path, Any]
) -> None:
    from mlflow.exceptions import MlflowException

    name = model_name("client")
    run_id = log_run(server, mlflow_model_dir[0])
    registry.create_registered_model(name)
    source = f"runs:/{run_id}/model"
    v1 = registry.create_model_version(name, source, run_id=run_id, tags={"k": "v"})
    v2 = registry.create_model_version(name, source, run_id=run_id, description="second")
    assert (v1.version, v2.version) == ("1", "2")
    assert (v1.status, v1.run_id, v1.source, v1.tags) == ("READY", run_id, source, {"k": "v"})

    registry.set_registered_model_alias(name, "prod", "1")
    by_alias = registry.get_model_version_by_alias(name, "prod")
    assert (by_alias.version, by_alias.aliases) == ("1", ["prod"])
    assert registry.get_registered_model(name).aliases == {"prod": "1"}

    staged = registry.transition_model_version_stage(name, "1", "Staging")
    assert staged.current_stage == "Staging"
    registry.transition_model_version_stage(name, "2", "Staging", archive_existing_versions=True)
    assert registry.get_model_version(name, "1").current_stage == "Archived"
    latest = registry.get_latest_versions(name, stages=["Staging"])
    assert [v.version for v in latest] == ["2"]

    found = registry.search_model_versions(f"name='{name}'")
    assert [v.version for v in found] == ["2", "1"]
    assert [v.version for v in registry.search_model_versions(f"run_id='{run_id}'")] == ["2", "1"]

    registry.update_model_version(name, "2", description="changed")
    registry.set_model_version_tag(name, "2", "reviewed", "yes")
    registry.delete_model_version_tag(name, "1", "k")
    assert registry.get_model_version(name, "2").tags == {"reviewed": "yes"}
    assert registry.get_model_version(name, "1").tags == {}
    uri = registry.get_model_version_download_uri(name, "1")
    assert uri.startswith(server.url)

    copy = registry.copy_model_version(f"models:/{name}/2", name + "-copy")
    assert (copy.name, copy.version, copy.run_id) == (name + "-copy", "1", run_id)
    registry.delete_registered_model(name + "-copy")

    registry.delete_registered_model_alias(name, "prod")
    with pytest.raises(MlflowException) as exc:
        registry.get_model_version_by_alias(name, "prod")
    assert error_code(exc) == "RESOURCE_DOES_NOT_EXIST"
    registry.delete_model_version(name, "1")
    assert [v.version for v in registry.search_model_versions(f"name='{name}'")] == ["2"]
    registry.delete_registered_model(name)


def test_pyfunc_loads_the_registry_copy_by_alias_and_number(
    registry: Any, server: Any, mlflow_model_dir: tuple[Path, Any], tmp_path: Path
) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn

    folder, x = mlflow_model_dir
    name = model_name("load")
    run_id = log_run(server, folder)
    registry.create_registered_model(name)
    registry.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    registry.set_registered_model_alias(name, "prod", "1")
    expected = mlflow.sklearn.load_model(str(folder)).predict(x)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@prod", dst_path=str(tmp_path))
    assert np.array_equal(loaded.predict(x), expected)
    again = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert np.array_equal(again.predict(x[:5]), expected[:5])
    # What was downloaded is the registry's copy, byte for byte what was logged.
    for f in folder.iterdir():
        assert (tmp_path / f.name).read_bytes() == f.read_bytes()


def test_mlflow_registered_models_are_mlplane_models_and_keep_the_approval_rules(
    registry: Any, server: Any, mlflow_model_dir: tuple[Path, Any]
) -> None:
    from mlflow.exceptions import MlflowException

    folder, x = mlflow_model_dir
    name = model_name("shared")
    run_id = log_run(server, folder, auc=0.8)
    registry.create_registered_model(name, description="from MLflow")
    registry.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)

    fluent.set_tracking_uri(server.url)
    assert name in [m.name for m in mlplane.registry.ls()]
    ours = mlplane.registry.get(f"{name}@1")
    assert (ours.flavor, ours.format, ours.scan_verdict) == ("pyfunc", "mlflow", "safe")
    assert ours.run_id == run_id and ours.metrics == {"auc": 0.8}
    # Loaded through mlplane's own SDK: the files are verified, MLflow's loader runs.
    import mlflow.sklearn

    expected = mlflow.sklearn.load_model(str(folder)).predict(x[:5])
    predictions = mlplane.registry.load(f"models:/{name}/1").predict(x[:5])
    assert np.array_equal(np.asarray(predictions), expected)

    mlplane.registry.set_policy(name, {"rules": ["auc >= 0.9"]})
    with pytest.raises(MlflowException) as exc:
        registry.set_registered_model_alias(name, "champion", "1")
    assert error_code(exc) == "INVALID_STATE"
    assert "rule auc >= 0.9 fails: auc is 0.8" in str(exc.value)
    assert registry.get_registered_model(name).aliases == {}

    # An alias set with mlplane is seen by MLflow, and the reverse.
    mlplane.registry.set_alias(name, "candidate", 1)
    assert registry.get_model_version_by_alias(name, "candidate").version == "1"
    registry.set_registered_model_alias(name, "shadow", "1")
    assert mlplane.registry.get(f"{name}@shadow").version == 1


def test_full_flow_log_model_register_alias_load(
    server: Any, mlflow_model_dir: tuple[Path, Any]
) -> None:
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.linear_model import LogisticRegression

    _, x = mlflow_model_dir
    y = (x[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    name = model_name("flow")
    mlflow.set_experiment(model_name("flow-exp"))
    with mlflow.start_run() as run:
        mlflow.log_metric("auc", 0.97)
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
    first = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    second = mlflow.register_model(info.model_uri, name)  # the model exists: a new version
    assert (first.version, second.version) == ("1", "2")
    assert first.run_id == run.info.run_id

    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    client.set_registered_model_alias(name, "champion", second.version)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert np.array_equal(loaded.predict(x), model.predict(x))

    fluent.set_tracking_uri(server.url)
    ours = mlplane.registry.get(f"{name}@champion")
    assert ours.version == 2 and ours.scan_verdict == "safe" and ours.metrics["auc"] == 0.97
