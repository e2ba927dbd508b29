"""``mlplane models …`` end to end on the embedded store."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import mlplane
from tests.cli.helpers import Invoke


def _model() -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (x["a"] > x["b"]).astype(int)
    return LogisticRegression().fit(x, y), x


def test_registry_commands(cli: Invoke, tmp_path: Path) -> None:
    model, x = _model()
    mlplane.registry.register("fraud", model, input_example=x[:5], metrics={"auc": 0.95})
    mlplane.registry.register("fraud", model, input_example=x[:5], metrics={"auc": 0.80})
    listed = json.loads(cli("models", "ls", "--json").stdout)
    assert [(m["name"], m["latest_version"]) for m in listed] == [("fraud", 2)]
    assert "fraud" in cli("models", "ls").output
    shown = cli("models", "show", "fraud@1")
    assert shown.exit_code == 0 and "safe" in shown.output and "SHA-256" in shown.output
    assert cli("models", "policy", "fraud", "--rule", "auc >= 0.9").exit_code == 0
    refused = cli("models", "promote", "fraud", "2", "--to", "champion")
    assert refused.exit_code == 1 and "auc >= 0.9 fails" in refused.output
    assert cli("models", "promote", "fraud", "1", "--to", "champion").exit_code == 0
    versions = json.loads(cli("models", "versions", "fraud", "--json").stdout)
    assert [v["aliases"] for v in versions] == [[], ["champion"]]
    card = cli("models", "card", "fraud@champion", "--set", "limitations=Synthetic data only.")
    assert card.exit_code == 0 and "Synthetic data only." in card.output
    html = tmp_path / "card.html"
    assert cli("models", "card", "fraud@1", "--html", "-o", str(html)).exit_code == 0
    assert "<h1>Model card: fraud@1</h1>" in html.read_text()
    lineage = cli("models", "lineage", "fraud@1", "--json")
    assert json.loads(lineage.stdout)["version"]["version"] == 1
    onnx = tmp_path / "m.onnx"
    exported = cli("models", "export", "fraud@1", "--format", "onnx", "-o", str(onnx), "--json")
    assert exported.exit_code == 0, exported.output
    assert onnx.stat().st_size > 0
    bundle = tmp_path / "bundle"
    packed = cli("models", "package", "fraud@champion", "--out", str(bundle), "--k8s")
    assert packed.exit_code == 0, packed.output
    assert (bundle / "Dockerfile").exists() and (bundle / "k8s" / "deployment.yaml").exists()
    assert cli("models", "tag", "fraud@1", "team=risk").exit_code == 0
    assert cli("models", "tag", "fraud@1", "nokey").exit_code == 1
    assert json.loads(cli("models", "show", "fraud@1", "--json").stdout)["tags"] == {"team": "risk"}
    assert cli("models", "show", "nope@1").exit_code == 1


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo pwned",))


def test_scan_exit_codes(cli: Invoke, tmp_path: Path) -> None:
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps(_Evil()))
    assert cli("models", "scan", str(good)).exit_code == 0
    out = cli("models", "scan", str(bad))
    assert out.exit_code == 1 and "system" in out.output
    report = json.loads(cli("models", "scan", str(bad), "--json").stdout)
    assert report["verdict"] == "unsafe"
    assert cli("models", "scan", str(tmp_path / "missing.pkl")).exit_code == 1


def test_quantized_export_reports_accuracy_on_a_dataset_version(
    cli: Invoke, tmp_path: Path
) -> None:
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(1)
    x = pd.DataFrame({f"f{i}": rng.normal(size=400) for i in range(8)})
    y = (x["f0"] + x["f1"] > 0).astype(int)
    model = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=200, random_state=0).fit(x, y)
    mlplane.registry.register("mlp", model, input_example=x[:5])
    mlplane.data.add("holdout", x.assign(label=y))
    out = tmp_path / "mlp.int8.onnx"
    res = cli(
        "models", "export", "mlp@1", "-o", str(out), "--quantize",
        "--data", "holdout@1", "--target", "label", "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["size_after"] < report["size_before"]
    assert abs(report["accuracy_after"] - report["accuracy_before"]) < 0.05
    assert report["accuracy_before"] == pytest.approx(model.score(x, y), abs=0.01)
