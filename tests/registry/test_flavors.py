"""Flavors: detection, save → load → predict for each, safe formats, uniform predict."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from mlplane.errors import InvalidInput, UnsafeArtifact
from mlplane.registry.flavors import (
    FLAVORS,
    Flavor,
    PyFuncModel,
    detect,
    get,
    load_model,
    save_model,
)
from mlplane.registry.signature import infer_signature


class Doubler(BaseEstimator, TransformerMixin):
    """A custom transformer: skops may not name it, so its pipeline is pickled."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return np.asarray(X, dtype=float) * 2


class Threshold:
    """A plain object with ``predict``: the pyfunc flavor."""

    def __init__(self, column: str, cut: float) -> None:
        self.column = column
        self.cut = cut

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return (data[self.column] > self.cut).to_numpy().astype(int)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100, 20, 80),
            "age": rng.integers(18, 80, 80),
            "country": rng.choice(["de", "fr", "it"], 80),
        }
    )
    y = ((frame["amount"] > 100) ^ (frame["country"] == "fr")).to_numpy().astype(int)
    return frame, y


@pytest.fixture(scope="module")
def pipeline(data: tuple[pd.DataFrame, np.ndarray]) -> Pipeline:
    frame, y = data
    pre = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount", "age"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
        ]
    )
    return Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(frame, y)


def roundtrip(model: object, folder: Path, **kwargs: Any) -> tuple[Flavor, dict[str, Any], Any]:
    """Detect, save, pass the info through JSON (as the registry stores it), load."""
    flavor = detect(model)
    info = json.loads(json.dumps(flavor.save(model, folder / "model", **kwargs)))
    for name in info["files"]:
        assert (folder / "model" / name).is_file()
    return flavor, info, get(info["flavor"]).load(folder / "model", info)


# -- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [object(), {"predict": "no"}, 42, LogisticRegression])
def test_detect_unsupported_names_type_and_flavors(model: object) -> None:
    with pytest.raises(InvalidInput) as err:
        detect(model)
    message = str(err.value)
    assert f"{type(model).__module__}.{type(model).__qualname__}" in message
    for flavor in FLAVORS:
        assert flavor.name in message


def test_detection_order_and_get(pipeline: Pipeline) -> None:
    assert [f.name for f in FLAVORS] == [
        "onnx",
        "torch",
        "xgboost",
        "lightgbm",
        "sklearn",
        "pyfunc",
    ]
    assert detect(pipeline).name == "sklearn"
    assert detect(Threshold("amount", 1.0)).name == "pyfunc"
    assert get("sklearn").name == "sklearn"
    with pytest.raises(InvalidInput, match="pyfunc"):
        get("keras")


def test_detecting_a_sklearn_model_imports_no_optional_library() -> None:
    code = (
        "import sys\n"
        "from sklearn.linear_model import LinearRegression\n"
        "from mlplane.registry.flavors import detect\n"
        "assert detect(LinearRegression()).name == 'sklearn'\n"
        "print(sorted(m for m in ('torch', 'xgboost', 'lightgbm') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- sklearn -----------------------------------------------------------------------------------


def test_sklearn_pipeline_uses_skops(
    pipeline: Pipeline, data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, _ = data
    flavor, info, loaded = roundtrip(pipeline, tmp_path)
    assert flavor.name == "sklearn"
    assert info["format"] == "skops" and info["files"] == ["model.skops"]
    assert info["pickle"] is False
    assert info["estimator"] == "sklearn.pipeline.Pipeline"
    assert info["library_version"]
    np.testing.assert_array_equal(flavor.predict(loaded, frame), pipeline.predict(frame))
    np.testing.assert_array_equal(loaded.predict_proba(frame), pipeline.predict_proba(frame))


@pytest.mark.parametrize(
    "model", [RandomForestClassifier(n_estimators=5, random_state=0), LogisticRegression()]
)
def test_sklearn_estimators_round_trip(
    model: BaseEstimator, data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, y = data
    numeric = frame[["amount", "age"]]
    model.fit(numeric, y)
    flavor, info, loaded = roundtrip(model, tmp_path)
    assert info["format"] == "skops" and info["pickle"] is False
    np.testing.assert_array_equal(flavor.predict(loaded, numeric), model.predict(numeric))


def test_custom_transformer_falls_back_to_pickle(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, y = data
    numeric = frame[["amount", "age"]]
    model = Pipeline([("double", Doubler()), ("clf", LogisticRegression())]).fit(numeric, y)
    flavor, info, loaded = roundtrip(model, tmp_path)
    assert info["format"] == "pickle" and info["pickle"] is True
    assert info["files"] == ["model.pkl"]
    assert "Doubler" in info["fallback_reason"]
    assert not (tmp_path / "model" / "model.skops").exists()
    np.testing.assert_array_equal(flavor.predict(loaded, numeric), model.predict(numeric))


@pytest.mark.parametrize(
    ("func", "name"),
    [(os.system, f"{os.system.__module__}.system"), (eval, "builtins.eval")],
)
def test_skops_file_naming_an_untrusted_type_is_refused(
    func: Any, name: str, tmp_path: Path
) -> None:
    import skops.io

    skops.io.dump(FunctionTransformer(func=func), tmp_path / "model.skops")
    with pytest.raises(UnsafeArtifact, match=re.escape(name)) as err:
        get("sklearn").load(tmp_path, {"flavor": "sklearn", "format": "skops"})
    assert err.value.details["types"] == [name]


def test_sklearn_model_fitted_on_arrays_predicts_without_name_warnings(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, y = data
    array = frame[["amount", "age"]].to_numpy()
    model = LogisticRegression().fit(array, y)
    info = save_model(model, tmp_path, input_example=array[:5])
    loaded = load_model(tmp_path, info, infer_signature(array[:5]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(loaded.predict(array), model.predict(array))


# -- xgboost and lightgbm ----------------------------------------------------------------------


def test_xgboost_classifier_and_booster(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    xgb = pytest.importorskip("xgboost")
    frame, y = data
    numeric = frame[["amount", "age"]]
    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(numeric, y)
    flavor, info, loaded = roundtrip(clf, tmp_path / "clf")
    assert flavor.name == "xgboost"
    assert info["format"] == "ubj" and info["pickle"] is False
    assert info["wrapper"] == "xgboost.sklearn.XGBClassifier"
    assert type(loaded) is xgb.XGBClassifier
    np.testing.assert_array_equal(flavor.predict(loaded, numeric), clf.predict(numeric))
    np.testing.assert_allclose(loaded.predict_proba(numeric), clf.predict_proba(numeric))

    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(numeric, y), 5)
    flavor, info, loaded = roundtrip(booster, tmp_path / "booster")
    assert info["wrapper"] is None and isinstance(loaded, xgb.Booster)
    expected = booster.predict(xgb.DMatrix(numeric))
    np.testing.assert_allclose(flavor.predict(loaded, numeric), expected)


def test_xgboost_wrapper_name_must_be_an_xgboost_model(tmp_path: Path) -> None:
    pytest.importorskip("xgboost")
    info = {"flavor": "xgboost", "format": "ubj", "wrapper": "os.system"}
    with pytest.raises(UnsafeArtifact, match=r"os\.system"):
        get("xgboost").load(tmp_path, info)


def test_lightgbm_classifier_and_booster(
    data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    lgb = pytest.importorskip("lightgbm")
    frame, y = data
    numeric = frame[["amount", "age"]]
    labels = np.where(y == 1, "yes", "no")
    clf = lgb.LGBMClassifier(n_estimators=5, num_leaves=4, verbose=-1).fit(numeric, labels)
    flavor, info, loaded = roundtrip(clf, tmp_path / "clf")
    assert flavor.name == "lightgbm"
    assert info["format"] == "txt" and info["pickle"] is False
    assert info["wrapper"] == "lightgbm.sklearn.LGBMClassifier"
    assert info["classes"] == ["no", "yes"]
    np.testing.assert_array_equal(flavor.predict(loaded, numeric), clf.predict(numeric))
    np.testing.assert_allclose(loaded.predict_proba(numeric), clf.predict_proba(numeric))
    # a loaded wrapper saves again
    again = get("lightgbm").save(loaded, tmp_path / "again")
    assert again["classes"] == ["no", "yes"]

    regressor = lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(numeric, frame["amount"])
    flavor, info, loaded = roundtrip(regressor, tmp_path / "reg")
    assert info["classes"] is None
    np.testing.assert_allclose(flavor.predict(loaded, numeric), regressor.predict(numeric))

    booster = lgb.train(
        {"objective": "binary", "verbose": -1}, lgb.Dataset(numeric, y), num_boost_round=5
    )
    flavor, info, loaded = roundtrip(booster, tmp_path / "booster")
    assert info["wrapper"] is None and isinstance(loaded, lgb.Booster)
    np.testing.assert_allclose(flavor.predict(loaded, numeric), booster.predict(numeric))


# -- onnx, pyfunc, torch -----------------------------------------------------------------------


def matmul_model(weights: np.ndarray) -> Any:
    """A one-node ONNX graph: output = input @ weights."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])],
        "matmul",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, weights.shape[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, weights.shape[1]])],
        initializer=[numpy_helper.from_array(weights.astype(np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_onnx_model_and_path(tmp_path: Path) -> None:
    import onnx

    weights = np.arange(6, dtype=np.float32).reshape(3, 2)
    proto = matmul_model(weights)
    x = pd.DataFrame(np.random.default_rng(0).normal(size=(4, 3)), columns=["a", "b", "c"])
    flavor, info, session = roundtrip(proto, tmp_path / "proto")
    assert flavor.name == "onnx"
    assert info["format"] == "onnx" and info["pickle"] is False
    assert info["opset"] == {"ai.onnx": 17}
    assert info["inputs"] == ["input"] and info["outputs"] == ["output"]
    expected = x.to_numpy(np.float32) @ weights
    np.testing.assert_allclose(flavor.predict(session, x), expected, rtol=1e-6)
    np.testing.assert_allclose(flavor.predict(proto, x), expected, rtol=1e-6)

    onnx.save_model(proto, str(tmp_path / "m.onnx"))
    flavor, info, session = roundtrip(str(tmp_path / "m.onnx"), tmp_path / "path")
    assert flavor.name == "onnx"
    np.testing.assert_allclose(flavor.predict(session, x), expected, rtol=1e-6)


def test_pyfunc_custom_class(data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path) -> None:
    frame, _ = data
    model = Threshold("amount", 100.0)
    flavor, info, loaded = roundtrip(model, tmp_path)
    assert flavor.name == "pyfunc"
    assert info["format"] == "pickle" and info["pickle"] is True
    assert info["serializer"] == "cloudpickle"
    assert info["class"].endswith("Threshold")
    np.testing.assert_array_equal(flavor.predict(loaded, frame), model.predict(frame))


try:
    import torch
except ImportError:  # the torch extra is optional; its tests skip
    torch = None

if torch is not None:

    class SoftmaxNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.linear(x), dim=-1)

    class UnscriptableNet(torch.nn.Module):
        """``torch.jit.script`` rejects the comprehension over a dict's items."""

        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, x: Any) -> Any:
            return self.linear(x) * len([k for k in {"a": 1}.items()])

    class NeedsArgsNet(UnscriptableNet):
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.scale = scale


@pytest.fixture
def x2() -> pd.DataFrame:
    return pd.DataFrame({"a": [0.1, 0.2, 0.3], "b": [1.0, 2.0, 3.0]})


def torch_predict(model: Any, x: pd.DataFrame) -> np.ndarray:
    assert torch is not None
    with torch.no_grad():
        return np.asarray(model(torch.tensor(x.to_numpy(), dtype=torch.float32)).numpy())


def test_torch_module_as_torchscript(x2: pd.DataFrame, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    model = SoftmaxNet()
    flavor, info, loaded = roundtrip(model, tmp_path)
    assert flavor.name == "torch"
    assert info["format"] == "torchscript" and info["method"] == "script"
    assert info["pickle"] is False
    np.testing.assert_allclose(flavor.predict(loaded, x2), torch_predict(model, x2), rtol=1e-6)


def test_torch_unscriptable_module_is_traced_with_the_example(
    x2: pd.DataFrame, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    model = UnscriptableNet()
    flavor, info, loaded = roundtrip(model, tmp_path, input_example=x2)
    assert info["format"] == "torchscript" and info["method"] == "trace"
    assert info["pickle"] is False
    np.testing.assert_allclose(flavor.predict(loaded, x2), torch_predict(model, x2), rtol=1e-6)


def test_torch_without_example_keeps_weights_in_safetensors(
    x2: pd.DataFrame, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    model = UnscriptableNet()
    flavor, info, loaded = roundtrip(model, tmp_path)
    assert info["format"] == "safetensors" and info["pickle"] is True
    assert info["files"] == ["model.safetensors", "class.pkl"]
    assert "script" in info["reason"]
    np.testing.assert_allclose(flavor.predict(loaded, x2), torch_predict(model, x2), rtol=1e-6)


def test_torch_module_needing_arguments_is_pickled(x2: pd.DataFrame, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    model = NeedsArgsNet(2.0)
    flavor, info, loaded = roundtrip(model, tmp_path)
    assert info["format"] == "pickle" and info["pickle"] is True
    assert loaded.scale == 2.0
    np.testing.assert_allclose(flavor.predict(loaded, x2), torch_predict(model, x2), rtol=1e-6)


# -- uniform predict ---------------------------------------------------------------------------


def test_uniform_predict_over_every_input_kind(
    pipeline: Pipeline, data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, _ = data
    info = save_model(pipeline, tmp_path)
    model = load_model(tmp_path, info, infer_signature(frame.head()))
    assert isinstance(model, PyFuncModel)
    expected = pipeline.predict(frame)
    table = pa.Table.from_pandas(frame)
    for given in (
        frame,
        frame.to_numpy(),
        table,
        table.to_batches()[0],
        frame.to_dict("records"),
        frame.assign(extra=1)[["extra", "country", "age", "amount"]],
    ):
        out = model.predict(given)
        assert isinstance(out, np.ndarray)
        np.testing.assert_array_equal(out, expected)


def test_uniform_predict_enforces_the_signature(
    pipeline: Pipeline, data: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    frame, _ = data
    model = load_model(tmp_path, save_model(pipeline, tmp_path), infer_signature(frame))
    with pytest.raises(InvalidInput, match="country"):
        model.predict(frame.drop(columns="country"))
    with pytest.raises(InvalidInput, match="'age' should be int64"):
        model.predict(frame.assign(age=frame["age"] + 0.5))


class ImageMean:
    """A pyfunc model over a tensor: the mean of each image."""

    def predict(self, images: np.ndarray) -> np.ndarray:
        assert images.dtype == np.float32
        return np.asarray(images.mean(axis=(1, 2)))


def test_uniform_predict_over_a_tensor_signature(tmp_path: Path) -> None:
    example = np.zeros((2, 4, 4), dtype=np.float32)
    model = load_model(tmp_path, save_model(ImageMean(), tmp_path), infer_signature(example))
    images = np.arange(32, dtype=np.float64).reshape(2, 4, 4)  # cast to the signature's float32
    np.testing.assert_allclose(model.predict(images), images.mean(axis=(1, 2)))
    with pytest.raises(InvalidInput, match="shape"):
        model.predict(np.zeros((2, 4, 5)))
