"""Driven by ``test_mlflow2_client.py`` with an MLflow 2.x client, in its own virtualenv.

It is a script, not a test module (pytest does not collect ``_*.py``), because it must run
in a Python where ``mlflow`` is 2.x; the test's Python has 3.x. It reads the server from
``MLFLOW_TRACKING_URI``, takes a name to keep its objects apart from other tests', and
prints one JSON object on its last line of stdout for the test to check.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression


def main(name: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"mlflow_version": mlflow.__version__}
    experiment = mlflow.set_experiment(f"{name}-experiment")
    summary["experiment_id"] = experiment.experiment_id

    # Explicit start/end (no context manager) for the parent: end_run is part of the surface.
    parent = mlflow.start_run(run_name="parent")
    mlflow.log_param("alpha", 0.5)
    mlflow.log_params({"solver": "lbfgs", "max_iter": 200})
    mlflow.set_tag("team", "risk")
    mlflow.set_tags({"stage": "dev", "owner": "mlflow2"})
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=2)
    mlflow.log_dict({"features": ["a", "b"]}, "config/features.json")
    with tempfile.TemporaryDirectory() as tmp:
        note = Path(tmp) / "notes.txt"
        note.write_text("trained by the 2.x client")
        mlflow.log_artifact(str(note), artifact_path="docs")
    children = []
    for i, score in enumerate((0.7, 0.9, 0.8)):
        with mlflow.start_run(run_name=f"child-{i}", nested=True) as child:
            mlflow.log_metric("score", score)
            children.append(child.info.run_id)

    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 5)
    y = np.array([0, 1, 1, 1] * 5)
    model = LogisticRegression().fit(x, y)
    info = mlflow.sklearn.log_model(model, artifact_path="model")
    summary["model_uri"] = info.model_uri
    mlflow.end_run()
    summary["parent"] = parent.info.run_id
    summary["children"] = children

    client = MlflowClient()
    run = client.get_run(summary["parent"])
    summary["status"] = run.info.status
    summary["params"] = run.data.params
    summary["tags"] = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
    summary["metrics"] = run.data.metrics
    summary["history"] = [
        (m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")
    ]
    summary["artifacts"] = sorted(a.path for a in client.list_artifacts(run.info.run_id))
    summary["model_files"] = sorted(a.path for a in client.list_artifacts(run.info.run_id, "model"))
    summary["features"] = mlflow.artifacts.load_dict(
        f"runs:/{run.info.run_id}/config/features.json"
    )

    found = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and metrics.score > 0.75",
        order_by=["metrics.score DESC"],
        output_format="list",
    )
    summary["search"] = [r.info.run_id for r in found]
    frame = mlflow.search_runs(experiment_ids=[experiment.experiment_id])
    summary["search_frame_rows"] = len(frame)

    version = mlflow.register_model(f"runs:/{parent.info.run_id}/model", f"{name}-model")
    summary["version"] = version.version
    client.set_registered_model_alias(version.name, "champion", version.version)
    loaded = mlflow.pyfunc.load_model(f"models:/{version.name}@champion")
    summary["predictions"] = [int(v) for v in loaded.predict(x[:4])]
    client.transition_model_version_stage(version.name, version.version, "Staging")
    staged = client.get_model_version(version.name, version.version)
    summary["stage"] = staged.current_stage
    summary["alias_version"] = client.get_model_version_by_alias(version.name, "champion").version

    victim = children[0]
    client.delete_run(victim)
    summary["deleted_stage"] = client.get_run(victim).info.lifecycle_stage
    client.restore_run(victim)
    summary["restored_stage"] = client.get_run(victim).info.lifecycle_stage
    return summary


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
