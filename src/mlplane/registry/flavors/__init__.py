"""Model flavors: how each kind of model is saved, loaded and asked to predict.

Safe formats first. A registry hands out models that other people load, and
unpickling a file runs whatever code it names. So each flavor saves in the
library's own data format whenever one exists, and falls back to pickle only
when nothing else can hold the model:

========  =====================================  ==================================
flavor    format (``info["format"]``)            pickle fallback
========  =====================================  ==================================
onnx      ``model.onnx`` (``onnx``)              never
torch     TorchScript ``model.pt``               weights in safetensors + a pickled
          (``torchscript``)                      class reference, else the module
xgboost   ``model.ubj`` (``ubj``)                never
lightgbm  ``model.txt`` (``txt``)                never
sklearn   ``model.skops`` (``skops``), loaded    when the model holds a type skops
          only if every type it names is         may not name (custom classes)
          trusted
pyfunc    ``model.pkl`` (``pickle``)             always: any object with ``predict``
========  =====================================  ==================================

``info["pickle"]`` is True exactly when loading unpickles, so the registry
knows which versions to scan; flavors never scan themselves.

Use::

    flavor = detect(model)                 # or get(info["flavor"]) later
    info = flavor.save(model, folder)      # JSON-able; store it with the version
    loaded = load_model(folder, info, signature)
    loaded.predict(frame_or_array_or_arrow_or_records)

:data:`FLAVORS` is the detection order: specific flavors first (an
``XGBClassifier`` is also a scikit-learn estimator), pyfunc last. Detection
imports an optional library (torch, xgboost, lightgbm) only for a model
whose type comes from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplane.errors import InvalidInput
from mlplane.registry.flavors.base import Flavor, PyFuncModel, qualified_name
from mlplane.registry.flavors.lightgbm import BoosterClassifier, BoosterRegressor, LightGBMFlavor
from mlplane.registry.flavors.onnx import OnnxFlavor
from mlplane.registry.flavors.pyfunc import PyFuncFlavor
from mlplane.registry.flavors.sklearn import SklearnFlavor
from mlplane.registry.flavors.torch import TorchFlavor
from mlplane.registry.flavors.xgboost import XGBoostFlavor
from mlplane.registry.signature import Signature

FLAVORS: list[type[Flavor]] = [
    OnnxFlavor,
    TorchFlavor,
    XGBoostFlavor,
    LightGBMFlavor,
    SklearnFlavor,
    PyFuncFlavor,
]
"""Every flavor, in detection order."""


def detect(model: object) -> Flavor:
    """The first flavor in :data:`FLAVORS` that handles ``model``.

    Raises:
        InvalidInput: Naming the model's type and the flavors, when none handles it.
    """
    for flavor in FLAVORS:
        if flavor.handles(model):
            return flavor()
    names = ", ".join(f.name for f in FLAVORS)
    raise InvalidInput(
        f"no model flavor handles {qualified_name(type(model))}; the flavors are {names} "
        "(any object with a callable `predict` is saved as pyfunc)",
        type=qualified_name(type(model)),
        flavors=[f.name for f in FLAVORS],
    )


def get(name: str) -> Flavor:
    """The flavor called ``name``.

    Raises:
        InvalidInput: Listing the flavors, when none has that name.
    """
    for flavor in FLAVORS:
        if flavor.name == name:
            return flavor()
    names = ", ".join(f.name for f in FLAVORS)
    raise InvalidInput(f"unknown model flavor {name!r}; the flavors are {names}")


def save_model(
    model: object, folder: Path, *, input_example: pd.DataFrame | np.ndarray | None = None
) -> dict[str, Any]:
    """Detect the model's flavor and save it into ``folder``; returns the flavor's info."""
    return detect(model).save(model, folder, input_example=input_example)


def load_model(
    folder: Path, info: Mapping[str, Any], signature: Signature | None = None
) -> PyFuncModel:
    """Load what :func:`save_model` wrote, wrapped for uniform prediction."""
    flavor = get(str(info["flavor"]))
    return PyFuncModel(flavor, flavor.load(folder, info), signature)


__all__ = [
    "FLAVORS",
    "BoosterClassifier",
    "BoosterRegressor",
    "Flavor",
    "LightGBMFlavor",
    "OnnxFlavor",
    "PyFuncFlavor",
    "PyFuncModel",
    "SklearnFlavor",
    "TorchFlavor",
    "XGBoostFlavor",
    "detect",
    "get",
    "load_model",
    "save_model",
]
