"""Fills MLflow stores with the stock MLflow client; run by the MLflow venv's python.

``python mlflow_driver.py FILE_STORE_URI SERVER_URL`` logs, to the file store
first and then (once it answers) to the server, the history the import tests
expect: experiments, nested, failed and deleted runs, metric histories with
explicit steps and timestamps, params, tags, a dataset input, artifacts, an
sklearn model registered twice with aliases, and a pickled one. It prints what
it logged to each as one JSON line (one process: importing MLflow costs
seconds), so the tests compare against what MLflow was told.
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.request
import warnings

warnings.filterwarnings("ignore")

import mlflow  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

BASE_TS = 1_700_000_000_000
BLOB = bytes(range(256)) * 64


def main(file_store: str, server: str) -> None:
    fs = fill(file_store)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{server}/health", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    print(json.dumps({"fs": fs, "server": fill(server)}))


def fill(uri: str) -> dict:
    mlflow.set_tracking_uri(uri)
    client = MlflowClient()
    exp_a = client.create_experiment("exp-a", tags={"team": "fraud"})
    exp_gone = client.create_experiment("exp-gone")
    expected: dict = {"experiments": {"exp-a": exp_a, "exp-gone": exp_gone}, "runs": {}}

    iris = load_iris(as_frame=True)
    X, y = iris.data, iris.target
    model = LogisticRegression(max_iter=300).fit(X, y)

    mlflow.set_experiment(experiment_id=exp_a)
    with mlflow.start_run(run_name="rf-1") as parent:
        rid = parent.info.run_id
        mlflow.log_params({"n_estimators": "10", "depth": "3"})
        mlflow.set_tags({"stage": "dev"})
        points = [Metric("loss", 1.0 / (s + 1), BASE_TS + 10 * s, s) for s in range(120)]
        points += [Metric("train/acc", 0.5 + s / 100, BASE_TS + 7 * s, s * 2) for s in range(15)]
        points.append(Metric("odd", math.nan, BASE_TS, 0))
        for i in range(0, len(points), 1000):
            client.log_batch(rid, metrics=points[i : i + 1000])
        mlflow.log_text("hello from mlflow", "notes.txt")
        mlflow.log_dict({"a": 1, "b": [1, 2]}, "plots/data.json")
        client.log_artifact(rid, _write_blob(), artifact_path="bin")
        mlflow.log_input(mlflow.data.from_pandas(X, name="iris"), context="training")
        # Explicit requirements: MLflow would otherwise load the model in a subprocess to infer
        # them, which costs seconds.
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=X.head(3),
            registered_model_name="iris-clf",
            pip_requirements=["scikit-learn"],
        )
        mlflow.sklearn.log_model(  # MLflow 3 saves with skops by default; this one pickles
            model,
            name="pickled",
            serialization_format="cloudpickle",
            registered_model_name="iris-pickle",
            pip_requirements=["scikit-learn"],
        )
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("loss", 0.25, step=3, timestamp=BASE_TS + 5)
            child_id = child.info.run_id
        expected["runs"][rid] = {
            "name": "rf-1",
            "metrics": {
                k: [(p.value, p.timestamp, p.step) for p in points if p.key == k]
                for k in ("loss", "train/acc", "odd")
            },
        }
    client.set_terminated(child_id, "FAILED", end_time=BASE_TS + 99)
    expected["runs"][child_id] = {"name": "child", "parent": rid, "status": "FAILED"}

    gone = client.create_run(exp_a, run_name="deleted-run")
    client.log_metric(gone.info.run_id, "m", 1.0, timestamp=BASE_TS, step=1)
    client.set_terminated(gone.info.run_id)
    client.delete_run(gone.info.run_id)
    expected["runs"][gone.info.run_id] = {"name": "deleted-run", "deleted": True}

    in_gone = client.create_run(exp_gone, run_name="in-gone")
    client.log_param(in_gone.info.run_id, "p", "1")
    client.set_terminated(in_gone.info.run_id)
    client.delete_experiment(exp_gone)
    expected["runs"][in_gone.info.run_id] = {"name": "in-gone"}

    v2 = mlflow.register_model(info.model_uri, "iris-clf")
    client.set_registered_model_alias("iris-clf", "champion", "1")
    client.set_registered_model_alias("iris-clf", "challenger", v2.version)
    client.set_model_version_tag("iris-clf", "1", "validated", "yes")
    expected["model"] = {
        "name": "iris-clf",
        "versions": ["1", v2.version],
        "run_id": rid,
        "sample": X.head(5).to_dict(orient="records"),
        "predictions": model.predict(X.head(5)).tolist(),
    }
    expected["blob_size"] = len(BLOB)
    return expected


def _write_blob() -> str:
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "blob.bin"
    path.write_bytes(BLOB)
    return str(path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
