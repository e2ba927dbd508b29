"""XGBoost boosters and scikit-learn wrappers, saved in XGBoost's own binary JSON (UBJSON)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplane.errors import UnsafeArtifact
from mlplane.registry.flavors.base import Flavor, comes_from, library_base, qualified_name

_FILE = "model.ubj"


class XGBoostFlavor(Flavor):
    """``xgboost.Booster`` and the wrappers (``XGBClassifier``, ``XGBRegressor``, ..).

    Saved with ``save_model("model.ubj")`` (format ``"ubj"``), which keeps the
    wrapper's classes and parameters too. ``info["wrapper"]`` names the xgboost
    class to rebuild (a user's subclass is rebuilt as its xgboost base), or is
    None for a bare Booster.
    """

    name = "xgboost"
    library = "xgboost"

    @classmethod
    def handles(cls, model: object) -> bool:
        if isinstance(model, type) or not comes_from(model, "xgboost"):
            return False
        import xgboost

        return isinstance(model, xgboost.Booster | xgboost.XGBModel)

    def save(
        self, model: object, folder: Path, *, input_example: pd.DataFrame | np.ndarray | None = None
    ) -> dict[str, Any]:
        import xgboost

        folder.mkdir(parents=True, exist_ok=True)
        if not isinstance(model, xgboost.Booster | xgboost.XGBModel):
            raise TypeError(f"not an xgboost model: {qualified_name(type(model))}")
        model.save_model(folder / _FILE)
        wrapper = None
        if isinstance(model, xgboost.XGBModel):
            wrapper = qualified_name(library_base(model, "xgboost"))
        return self._info("ubj", [_FILE], wrapper=wrapper)

    def load(self, folder: Path, info: Mapping[str, Any]) -> Any:
        """Load a Booster, or the wrapper class ``info["wrapper"]`` names.

        Raises:
            UnsafeArtifact: When ``wrapper`` names anything but an xgboost model class.
        """
        import xgboost

        path = str(folder / _FILE)
        wrapper = info.get("wrapper")
        if wrapper is None:
            booster = xgboost.Booster()
            booster.load_model(path)
            return booster
        model = _wrapper_class(str(wrapper))()
        model.load_model(path)
        return model

    def predict(self, model: Any, data: pd.DataFrame | np.ndarray) -> Any:
        """A Booster predicts on a ``DMatrix``; wrappers use their own ``predict``."""
        import xgboost

        if isinstance(model, xgboost.Booster):
            return model.predict(xgboost.DMatrix(data))
        return model.predict(data)


def _wrapper_class(name: str) -> type[Any]:
    import xgboost

    module, _, qualname = name.rpartition(".")
    cls = None
    if module.split(".")[0] == "xgboost":
        cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and issubclass(cls, xgboost.XGBModel)):
        raise UnsafeArtifact(f"wrapper {name!r} is not an xgboost model class", wrapper=name)
    return cls
