"""ONNX conversion with a parity check, and int8 quantization."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlplane.registry.export import quantize, to_onnx
from mlplane.registry.flavors import detect, get
from tests.registry.test_flavors import Doubler, Threshold, matmul_model


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100, 20, 120),
            "age": rng.integers(18, 80, 120),
            "country": rng.choice(["de", "fr", "it"], 120),
        }
    )
    y = ((frame["amount"] > 100) ^ (frame["country"] == "fr")).to_numpy().astype(int)
    return frame, y


def convert(model: Any, example: pd.DataFrame, folder: Path) -> dict[str, Any]:
    result = to_onnx(model, detect(model), example, folder)
    json.dumps(result)  # stored with the version as JSON
    return result


def test_sklearn_pipeline_with_strings_has_probability_parity(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, y = data
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "age"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
        ]
    )
    model = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, y)
    result = convert(model, frame, tmp_path / "onnx")
    assert result["file"] == "model.onnx" and (tmp_path / "onnx" / "model.onnx").is_file()
    assert result["converter"] == "skl2onnx"
    assert result["inputs"] == ["amount", "age", "country"]  # one input per column
    assert result["outputs"] == ["label", "probabilities"]
    assert result["opset"]["ai.onnx"] >= 13
    assert result["parity_max_abs_diff"] < 1e-4
    assert result["parity_label_agreement"] == 1.0 and result["parity_ok"] is True
    # the ONNX flavor feeds the per-column inputs from a frame
    onnx_flavor = get("onnx")
    session = onnx_flavor.load(tmp_path / "onnx", {})
    np.testing.assert_array_equal(onnx_flavor.predict(session, frame), model.predict(frame))


def test_numeric_sklearn_model_gets_one_tensor_input(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, _ = data
    numeric = frame[["amount", "age"]]
    model = Pipeline([("scale", StandardScaler()), ("reg", LinearRegression())])
    model.fit(numeric, frame["amount"] * 2 + frame["age"])
    result = convert(model, numeric, tmp_path)
    assert result["inputs"] == ["input"]
    assert result["parity_ok"] is True and "parity_label_agreement" not in result


def test_xgboost_parity(data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    pytest.importorskip("onnxmltools")
    frame, y = data
    numeric = frame[["amount", "age"]]
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(numeric, y)
    result = convert(clf, numeric, tmp_path / "clf")
    assert result["converter"] == "onnxmltools"
    assert result["parity_max_abs_diff"] < 1e-4 and result["parity_label_agreement"] == 1.0
    booster = clf.get_booster()
    result = convert(booster, numeric, tmp_path / "booster")
    assert result["parity_max_abs_diff"] < 1e-4 and result["parity_ok"] is True


def test_lightgbm_parity(data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    lgb = pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    frame, y = data
    numeric = frame[["amount", "age"]]
    labels = np.where(y == 1, "yes", "no")
    clf = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1).fit(numeric, labels)
    result = convert(clf, numeric, tmp_path / "clf")
    assert result["parity_max_abs_diff"] < 1e-4 and result["parity_label_agreement"] == 1.0
    # a wrapper loaded back from the registry converts too (its labels map through classes_)
    flavor = get("lightgbm")
    info = flavor.save(clf, tmp_path / "saved")
    loaded = flavor.load(tmp_path / "saved", info)
    result = to_onnx(loaded, flavor, numeric, tmp_path / "loaded")
    assert result["parity_max_abs_diff"] < 1e-4 and result["parity_label_agreement"] == 1.0


def test_torch_parity(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tests.registry.test_flavors import SoftmaxNet

    example = pd.DataFrame({"a": [0.1, 0.2, 0.3], "b": [1.0, 2.0, 3.0]})
    result = convert(SoftmaxNet(), example, tmp_path)
    if result["file"] is None:  # the TorchScript exporter may be gone from a newer torch
        pytest.skip(result["reason"])
    assert result["converter"] == "torch.onnx"
    assert result["parity_max_abs_diff"] < 1e-5


def test_unconvertible_models_give_a_reason(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, y = data
    numeric = frame[["amount", "age"]]
    custom = Pipeline([("double", Doubler()), ("clf", LogisticRegression())]).fit(numeric, y)
    result = convert(custom, numeric, tmp_path / "custom")
    assert result["file"] is None and "skl2onnx" in result["reason"]
    assert not (tmp_path / "custom").exists()

    result = convert(Threshold("amount", 1.0), frame, tmp_path / "pyfunc")
    assert result == {"file": None, "reason": result["reason"]}
    assert "pyfunc" in result["reason"]

    proto = matmul_model(np.ones((2, 2)))
    assert "ONNX already" in convert(proto, numeric, tmp_path / "onnx")["reason"]


def test_quantize_shrinks_matmul_weights(tmp_path: Path) -> None:
    import onnx

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(64, 256)).astype(np.float32) / 8
    onnx.save_model(matmul_model(weights), str(tmp_path / "model.onnx"))
    example = pd.DataFrame(rng.normal(size=(16, 64)))
    result = quantize(tmp_path / "model.onnx", tmp_path / "q" / "model.int8.onnx", example=example)
    assert result["file"] == "model.int8.onnx"
    assert result["size_after"] < result["size_before"] / 2
    assert 0 < result["max_abs_diff"] < 0.5

    reference = quantize(
        tmp_path / "model.onnx",
        tmp_path / "q2.onnx",
        example=example,
        reference=lambda frame: frame.to_numpy(np.float32) @ weights,
    )
    assert reference["max_abs_diff"] == pytest.approx(result["max_abs_diff"], rel=0.2)
    assert "max_abs_diff" not in quantize(tmp_path / "model.onnx", tmp_path / "q3.onnx")


def test_quantize_classifier_reports_label_agreement(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, y = data
    numeric = frame[["amount", "age"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = Pipeline(
            [
                ("s", StandardScaler()),
                ("mlp", MLPClassifier((128, 128), max_iter=50, random_state=0)),
            ]
        ).fit(numeric, y)
    assert convert(mlp, numeric, tmp_path)["parity_ok"] is True
    result = quantize(tmp_path / "model.onnx", tmp_path / "int8.onnx", example=numeric)
    assert result["size_after"] < result["size_before"]
    assert result["max_abs_diff"] < 0.2
    assert 0.8 <= result["label_agreement"] <= 1.0
