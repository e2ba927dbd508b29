"""LightGBM boosters and scikit-learn wrappers, saved as LightGBM's text model.

LightGBM has no public way to rebuild a fitted ``LGBMClassifier`` from a
Booster, and setting its private attributes would break with the next
release. So a saved wrapper loads as :class:`BoosterClassifier` or
:class:`BoosterRegressor`: a small object around the Booster with the
wrapper's ``predict`` (and ``predict_proba``) semantics, including the
original class labels, which the flavor records in ``info["classes"]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplane.registry.flavors.base import Flavor, comes_from, library_base, qualified_name

_FILE = "model.txt"


class BoosterRegressor:
    """A loaded ``LGBMRegressor`` (or ``LGBMRanker``): ``predict`` is the Booster's.

    Attributes:
        booster_: The ``lightgbm.Booster``.
        wrapper: The name of the wrapper class this was saved from.
    """

    def __init__(self, booster: Any, wrapper: str) -> None:
        self.booster_ = booster
        self.wrapper = wrapper

    @property
    def n_features_in_(self) -> int:
        """How many features the model takes."""
        return int(self.booster_.num_feature())

    @property
    def feature_name_(self) -> list[str]:
        """The feature names the model was trained with."""
        return list(self.booster_.feature_name())

    def predict(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The Booster's predictions."""
        return np.asarray(self.booster_.predict(data))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(wrapper={self.wrapper!r})"


class BoosterClassifier(BoosterRegressor):
    """A loaded ``LGBMClassifier``: probabilities from the Booster, labels from ``classes_``.

    Attributes:
        classes_: The class labels, in the order of the probability columns.
    """

    def __init__(self, booster: Any, wrapper: str, classes: Sequence[Any]) -> None:
        super().__init__(booster, wrapper)
        self.classes_ = np.asarray(classes)

    def predict_proba(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """One column per class, as ``LGBMClassifier.predict_proba``."""
        raw = np.asarray(self.booster_.predict(data))
        if raw.ndim == 1:  # binary: the Booster gives the second class's probability
            return np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        """The most probable class label (the first on ties), as ``LGBMClassifier.predict``."""
        return np.asarray(self.classes_[np.argmax(self.predict_proba(data), axis=1)])


class LightGBMFlavor(Flavor):
    """``lightgbm.Booster`` and the wrappers (``LGBMClassifier``, ``LGBMRegressor``, ..).

    Saved with ``save_model("model.txt")`` (format ``"txt"``). A Booster loads
    as a Booster; a wrapper as :class:`BoosterClassifier` (when it has
    ``classes_``) or :class:`BoosterRegressor`, named in ``info["wrapper"]``.
    """

    name = "lightgbm"
    library = "lightgbm"

    @classmethod
    def handles(cls, model: object) -> bool:
        if isinstance(model, BoosterRegressor):
            return True
        if isinstance(model, type) or not comes_from(model, "lightgbm"):
            return False
        import lightgbm

        return isinstance(model, lightgbm.Booster | lightgbm.LGBMModel)

    def save(
        self, model: object, folder: Path, *, input_example: pd.DataFrame | np.ndarray | None = None
    ) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        booster, wrapper, classes = _parts(model)
        booster.save_model(str(folder / _FILE))
        return self._info("txt", [_FILE], wrapper=wrapper, classes=classes)

    def load(self, folder: Path, info: Mapping[str, Any]) -> Any:
        import lightgbm

        booster = lightgbm.Booster(model_file=str(folder / _FILE))
        wrapper = info.get("wrapper")
        if wrapper is None:
            return booster
        classes = info.get("classes")
        if classes is not None:
            return BoosterClassifier(booster, str(wrapper), classes)
        return BoosterRegressor(booster, str(wrapper))


def _parts(model: object) -> tuple[Any, str | None, list[Any] | None]:
    """The Booster, the wrapper's class name and the class labels (JSON-able) of a model."""
    if isinstance(model, BoosterRegressor):
        classes = model.classes_.tolist() if isinstance(model, BoosterClassifier) else None
        return model.booster_, model.wrapper, classes
    import lightgbm

    if isinstance(model, lightgbm.Booster):
        return model, None, None
    if not isinstance(model, lightgbm.LGBMModel):
        raise TypeError(f"not a lightgbm model: {qualified_name(type(model))}")
    wrapper = qualified_name(library_base(model, "lightgbm"))
    classes = getattr(model, "classes_", None)
    return model.booster_, wrapper, None if classes is None else np.asarray(classes).tolist()
