"""The source parsers on small hand-written stores, and an import from one: no MLflow needed."""

from __future__ import annotations

import math
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import mlplane.registry
from mlplane.cli.main import app
from mlplane.client import Client
from mlplane.errors import InvalidInput, Unavailable
from mlplane.importers.mlflow import (
    TAG_SOURCE_ID,
    FileStoreSource,
    MlflowImport,
    RestSource,
    SqlSource,
    open_source,
)
from mlplane.importers.mlflow._entities import SrcRun, status_name
from mlplane.importers.mlflow._import import _parents_first
from mlplane.importers.mlflow._models import Unsupported, convert, signature_from_mlmodel
from tests.conftest import free_port

RUN = "a" * 32
CHILD = "b" * 32


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _yaml(path: Path, data: dict[str, object]) -> None:
    _write(path, yaml.safe_dump(data))


def _model_folder(folder: Path, *, flavor: str = "sklearn") -> LogisticRegression:
    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    model = LogisticRegression().fit(X, [0, 1, 0, 1])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(model, protocol=5))
    flavors: dict[str, object] = {
        "python_function": {"loader_module": "mlflow.sklearn", "python_version": "3.11.7"}
    }
    if flavor == "sklearn":
        flavors["sklearn"] = {"pickled_model": "model.pkl", "serialization_format": "pickle"}
    signature = {
        "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}}]',
        "outputs": '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]',
    }
    _yaml(folder / "MLmodel", {"flavors": flavors, "signature": signature})
    _write(folder / "requirements.txt", "scikit-learn==1.9.1\n# a comment\n")
    return model


def _mlruns(root: Path) -> LogisticRegression:
    """A small file store as MLflow 3 lays it out."""
    exp = root / "1"
    meta = {"experiment_id": "1", "name": "fraud", "lifecycle_stage": "active"}
    _yaml(exp / "meta.yaml", {**meta, "artifact_location": f"file://{exp}", "creation_time": 5})
    _write(exp / "tags" / "team", "risk")
    dataset = {"name": "txns", "digest": "abc", "source_type": "local", "source": "{}"}
    _yaml(exp / "datasets" / "d1" / "meta.yaml", dataset)
    for rid, name, status, parent in ((RUN, "parent", 3, None), (CHILD, "kid", 4, RUN)):
        run = exp / rid
        _yaml(run / "meta.yaml", {"run_id": rid, "run_name": name, "experiment_id": "1",
                                  "status": status, "start_time": 10, "end_time": 20,
                                  "lifecycle_stage": "active",
                                  "artifact_uri": "file:///moved/away/artifacts"})  # fmt: skip
        if parent:
            _write(run / "tags" / "mlflow.parentRunId", parent)
    run = exp / RUN
    _write(run / "metrics" / "loss", "100 0.5 0\n110 0.25 1\n120 nan 2\n")
    _write(run / "metrics" / "train" / "acc", "100 0.9\n")
    _write(run / "params" / "depth", "3")
    _write(run / "tags" / "mlflow.user", "ana")
    _write(run / "artifacts" / "sub" / "a.txt", "A")
    _yaml(run / "inputs" / "i1" / "meta.yaml",
          {"source_type": "DATASET", "source_id": "d1", "destination_type": "RUN",
           "destination_id": RUN, "tags": {"mlflow.data.context": "training"}})  # fmt: skip
    _yaml(root / ".trash" / "2" / "meta.yaml", {"experiment_id": "2", "name": "old"})
    model = _model_folder(exp / "models" / "m-1" / "artifacts")
    _yaml(exp / "models" / "m-1" / "meta.yaml", {"model_id": "m-1", "artifact_location": "gone"})
    reg = root / "models" / "clf"
    _yaml(reg / "meta.yaml", {"name": "clf", "description": "d"})
    _write(reg / "aliases" / "prod", "1")
    _yaml(reg / "version-1" / "meta.yaml", {"name": "clf", "version": 1, "source": "models:/m-1",
                                            "run_id": RUN, "status": "READY"})  # fmt: skip
    _write(reg / "version-1" / "tags" / "ok", "yes")
    return model


def test_file_store_parser(tmp_path: Path) -> None:
    _mlruns(tmp_path)
    src = FileStoreSource(tmp_path)
    exps = {e.name: e for e in src.experiments()}
    assert exps["fraud"].tags == {"team": "risk"} and exps["old"].deleted
    runs = {r.run_id: r for r in src.runs("1")}
    parent, kid = runs[RUN], runs[CHILD]
    assert (parent.name, parent.status, kid.status, kid.parent_run_id) == (
        "parent", "FINISHED", "FAILED", RUN,
    )  # fmt: skip
    assert parent.params == {"depth": "3"} and sorted(parent.metric_keys) == ["loss", "train/acc"]
    points = src.metric_history(parent)
    assert points[:2] == [("loss", 0.5, 100, 0), ("loss", 0.25, 110, 1)]
    assert math.isnan(points[2][1]) and points[3] == ("train/acc", 0.9, 100, 0)
    [inp] = parent.inputs
    assert (inp.name, inp.digest, inp.context) == ("txns", "abc", "training")
    # The recorded artifact URI no longer exists: the run's own folder is used.
    assert [f.path for f in src.list_files(src.resolve(parent.artifact_uri))] == ["sub/a.txt"]
    [model] = src.models()
    assert model.aliases == {"prod": "1"}
    [v] = src.model_versions("clf")
    assert (v.version, v.run_id, v.tags) == ("1", RUN, {"ok": "yes"})
    assert Path(src.model_uri(v)).name == "artifacts"


def test_import_of_a_hand_written_file_store(tmp_path: Path) -> None:
    model = _mlruns(tmp_path / "mlruns")
    with Client() as c:
        report = MlflowImport(c, FileStoreSource(tmp_path / "mlruns")).run()
        assert report.failures == []
        exp = c.get_experiment_by_name("fraud")
        assert exp is not None
        runs = {r.data.tags[TAG_SOURCE_ID]: r for r in c.search_all_runs([exp.experiment_id])}
        assert runs[CHILD].info.parent_run_id == runs[RUN].info.run_id
        assert c.read_artifact(runs[RUN].info.run_id, "sub/a.txt") == b"A"
        loss = c.get_metric_history(runs[RUN].info.run_id, "loss")
        assert [m.step for m in loss] == [0, 1, 2] and math.isnan(loss[2].value)
        assert runs[RUN].data.tags["mlflow.user"] == "ana"
        assert c.get_experiment_by_name("old").lifecycle_stage == "deleted"  # type: ignore[union-attr]
        v = mlplane.registry.get("clf@prod")
        assert (v.format, v.scan_verdict, v.run_id) == ("pickle", "safe", runs[RUN].info.run_id)
        X = np.array([[0.0, 3.0], [3.0, 0.0]])
        assert mlplane.registry.load("clf@prod").predict(X).tolist() == model.predict(X).tolist()


def test_a_pickle_that_runs_code_is_refused_and_reported(tmp_path: Path) -> None:
    _mlruns(tmp_path / "mlruns")
    bad = tmp_path / "mlruns" / "1" / "models" / "m-1" / "artifacts" / "model.pkl"
    bad.write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")  # os.system('echo hi'), never loaded
    with Client() as c:
        report = MlflowImport(c, FileStoreSource(tmp_path / "mlruns")).run()
    [failure] = report.failures
    assert failure.kind == "model_versions" and "os" in failure.reason
    assert report.tallies["runs"].imported == 2


def test_convert_keeps_mlflow_files_and_maps_the_signature(tmp_path: Path) -> None:
    _model_folder(tmp_path / "src")
    info = convert(tmp_path / "src", tmp_path / "out", mlflow_ref="models:/clf/1")
    assert (info["flavor"], info["format"], info["pickle"]) == ("sklearn", "pickle", True)
    assert (tmp_path / "out" / "model" / "model.pkl").is_file()
    assert (tmp_path / "out" / "mlflow" / "MLmodel").is_file()
    assert not (tmp_path / "out" / "mlflow" / "model.pkl").exists()
    _model_folder(tmp_path / "custom", flavor="python_function")
    with pytest.raises(Unsupported, match="python_function"):
        convert(tmp_path / "custom", tmp_path / "out2", mlflow_ref="models:/x/1")


def test_signature_mapping() -> None:
    cols = {
        "inputs": '[{"type": "double", "name": "a"}, {"type": "string", "name": "b"}]',
        "outputs": '[{"type": "long"}]',
    }
    sig = signature_from_mlmodel(cols)
    assert sig is not None
    assert sig.to_dict() == {
        "inputs": [{"name": "a", "type": "float64"}, {"name": "b", "type": "string"}],
        "outputs": [{"name": "y", "type": "int64"}],
    }
    image = {
        "inputs": '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 8, 8]}}]'
    }
    assert signature_from_mlmodel(image).to_dict()["inputs"][0]["shape"] == [-1, 8, 8]  # type: ignore[union-attr]
    assert signature_from_mlmodel(None) is None
    assert signature_from_mlmodel({"inputs": "not json"}) is None


def _mlflow_db(path: Path) -> None:
    """The MLflow tables and columns the import reads (a subset of MLflow's schema)."""
    con = sqlite3.connect(path)
    con.executescript(
        f"""
        CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT,
            artifact_location TEXT, lifecycle_stage TEXT, creation_time INTEGER);
        CREATE TABLE experiment_tags (key TEXT, value TEXT, experiment_id INTEGER);
        CREATE TABLE runs (run_uuid TEXT, name TEXT, status TEXT, start_time INTEGER,
            end_time INTEGER, lifecycle_stage TEXT, artifact_uri TEXT, experiment_id INTEGER);
        CREATE TABLE metrics (key TEXT, value REAL, timestamp INTEGER, run_uuid TEXT,
            step INTEGER, is_nan BOOLEAN);
        CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);
        CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT);
        INSERT INTO experiments VALUES (3, 'churn', 'mlflow-artifacts:/3', 'deleted', 7);
        INSERT INTO experiment_tags VALUES ('k', 'v', 3);
        INSERT INTO runs VALUES ('{RUN}', 'r', 'KILLED', 1, 2, 'deleted',
            'mlflow-artifacts:/3/{RUN}/artifacts', 3);
        INSERT INTO metrics VALUES ('m', 2.0, 9, '{RUN}', 1, 0), ('m', 0.0, 8, '{RUN}', 0, 1);
        INSERT INTO params VALUES ('p', '1', '{RUN}');
        """
    )
    con.commit()
    con.close()


def test_sql_parser_and_artifacts_root(tmp_path: Path) -> None:
    _mlflow_db(tmp_path / "m.db")
    _write(tmp_path / "art" / "3" / RUN / "artifacts" / "f.txt", "F")
    src = SqlSource(f"sqlite:///{tmp_path / 'm.db'}", artifacts_root=tmp_path / "art")
    [exp] = src.experiments()
    assert (exp.name, exp.deleted, exp.tags) == ("churn", True, {"k": "v"})
    [run] = src.runs("3")
    assert (run.status, run.deleted, run.params, run.metric_keys) == (
        "KILLED",
        True,
        {"p": "1"},
        ("m",),
    )
    history = src.metric_history(run)
    assert math.isnan(history[0][1]) and history[1] == ("m", 2.0, 9, 1)
    assert [f.path for f in src.list_files(run.artifact_uri)] == ["f.txt"]
    assert src.models() == []
    no_root = SqlSource(f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(InvalidInput, match="--artifacts-root"):
        no_root.list_files(run.artifact_uri)
    src.close()
    no_root.close()


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(InvalidInput, match="not an MLflow database"):
        SqlSource(f"sqlite:///{tmp_path / 'other.db'}")
    with pytest.raises(InvalidInput, match="no such SQLite"):
        open_source(f"sqlite:///{tmp_path / 'missing.db'}")
    with pytest.raises(InvalidInput, match="not an MLflow file store"):
        open_source(str(tmp_path))
    with pytest.raises(InvalidInput, match="not a folder"):
        open_source(str(tmp_path / "nope"))
    with pytest.raises(Unavailable, match="cannot reach"):
        RestSource(f"http://127.0.0.1:{free_port()}")


def test_cli_exits_non_zero_on_a_bad_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["import", "mlflow", "--from", str(tmp_path)])
    assert result.exit_code == 1
    assert "not an MLflow file store" in result.output


def test_experiment_filter_names_what_exists(tmp_path: Path) -> None:
    _mlruns(tmp_path / "mlruns")
    with Client() as c:
        with pytest.raises(InvalidInput, match="fraud"):
            MlflowImport(c, FileStoreSource(tmp_path / "mlruns"), experiments=["nope"]).run()
        assert c.get_experiment_by_name("fraud") is None  # refused before anything is written


def test_status_names_and_parent_order() -> None:
    assert [status_name(v) for v in (1, "3", "killed", None, 99)] == [
        "RUNNING", "FINISHED", "KILLED", "RUNNING", "FINISHED",
    ]  # fmt: skip

    def run(rid: str, parent: str | None) -> SrcRun:
        tags = {"mlflow.parentRunId": parent} if parent else {}
        return SrcRun(rid, "1", rid, "FINISHED", 0, 0, "active", "", tags=tags)

    ordered = _parents_first([run("c", "b"), run("b", "a"), run("a", None), run("x", "zz")])
    assert [r.run_id for r in ordered] == ["a", "b", "c", "x"]
