"""``mlplane quickstart`` end to end: real models, real store, then the commands it suggests."""

from __future__ import annotations

import json
import re

from mlplane.client import Client
from tests.cli.helpers import Invoke


def test_quickstart_tracks_models_and_suggests_next_steps(cli: Invoke, sdk: Client) -> None:
    result = cli("quickstart")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Browse:  mlplane runs ls --experiment quickstart" in out
    assert "mlplane server" in out
    compare = re.search(r"mlplane runs compare ([0-9a-f]{8}) ([0-9a-f]{8})", out)
    assert compare is not None, out

    exp = sdk.get_experiment_by_name("quickstart")
    assert exp is not None
    assert f"http://127.0.0.1:5000/ui/experiments/{exp.experiment_id}" in out  # the run table
    runs = list(sdk.search_all_runs(exp.experiment_id, order_by=["metrics.accuracy DESC"]))
    assert len(runs) >= 3
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {"accuracy", "f1", "roc_auc", "val_accuracy"} <= set(run.data.metrics)
        assert 0.8 < run.data.metrics["accuracy"] <= 1.0
        assert run.data.tags["mlplane.seed"] == "42"
        assert run.data.params["seed"] == "42"
        assert [(i.kind, i.name) for i in run.inputs] == [("dataset", "breast_cancer")]
        paths = {a.path for a in sdk.list_artifacts(run.info.run_id, recursive=True)}
        assert {"eval/confusion_matrix.json", "eval/classification_report.txt"} <= paths
    assert runs[0].info.run_id.startswith(compare.group(1))
    boosting = next(r for r in runs if r.data.params["model"] == "gradient_boosting")
    assert len(sdk.get_metric_history(boosting.info.run_id, "val_accuracy")) == 50
    matrix = json.loads(sdk.read_artifact(boosting.info.run_id, "eval/confusion_matrix.json"))
    assert sum(map(sum, matrix["matrix"])) == 114  # the 20% test split of 569 samples

    # The printed next steps work as printed.
    assert cli("runs", "compare", compare.group(1), compare.group(2)).exit_code == 0
    listed = json.loads(cli("runs", "ls", "--experiment", "quickstart", "--json").stdout)
    assert len(listed) == len(runs)


def test_quickstart_json_summary(cli: Invoke) -> None:
    result = cli("quickstart", "--experiment", "qs-json", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["experiment"] == "qs-json"
    assert summary["main_metric"] == "accuracy"
    assert len(summary["runs"]) == len(summary["run_ids"]) >= 3
    assert summary["best_run_id"] == summary["runs"][0]["run_id"]
    scores = [r["metrics"]["accuracy"] for r in summary["runs"]]
    assert scores == sorted(scores, reverse=True)
