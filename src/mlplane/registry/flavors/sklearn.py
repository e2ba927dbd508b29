"""scikit-learn estimators and pipelines, saved with skops; pickle only when skops cannot.

skops writes a schema of every type in the file, so loading can refuse a
file before any object is built. A type is trusted when skops trusts it by
default or when it is a *class* under one of :data:`TRUSTED_PREFIXES` (or
named in :data:`TRUSTED_NAMES`). Functions under those prefixes are not
trusted (``builtins.eval`` lives under ``builtins``); skops already trusts
the NumPy ufuncs that a ``FunctionTransformer`` usually holds.

A model whose file would name an untrusted type (a custom transformer, say)
could be saved but never loaded, so :meth:`SklearnFlavor.save` falls back to
pickle for it and says so with ``info["pickle"] = True``; the registry scans
every pickle before it is loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplane.errors import UnsafeArtifact
from mlplane.registry.flavors.base import (
    Flavor,
    comes_from,
    dump_pickle,
    load_pickle,
    qualified_name,
)

TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")
"""Modules whose classes a skops file may name."""

TRUSTED_NAMES = frozenset(
    {
        # The boosters inside the xgboost and lightgbm scikit-learn wrappers, which a
        # pipeline may hold; they serialize their model as text or bytes.
        "xgboost.core.Booster",
        "lightgbm.basic.Booster",
    }
)
"""Single classes outside :data:`TRUSTED_PREFIXES` a skops file may name."""

_TRUSTED_WRAPPER_PREFIXES = ("xgboost.sklearn.", "lightgbm.sklearn.")
_SKOPS_FILE = "model.skops"
_PICKLE_FILE = "model.pkl"


class SklearnFlavor(Flavor):
    """scikit-learn estimators, including pipelines and column transformers.

    Saved as ``model.skops`` (format ``"skops"``), or ``model.pkl`` (format
    ``"pickle"``, ``info["pickle"] = True``) when the model holds a type that
    a skops file may not name; ``info["fallback_reason"]`` then says which.
    """

    name = "sklearn"
    library = "scikit-learn"

    @classmethod
    def handles(cls, model: object) -> bool:
        return not isinstance(model, type) and comes_from(model, "sklearn")

    def save(
        self, model: object, folder: Path, *, input_example: pd.DataFrame | np.ndarray | None = None
    ) -> dict[str, Any]:
        import skops.io

        folder.mkdir(parents=True, exist_ok=True)
        estimator = qualified_name(type(model))
        path = folder / _SKOPS_FILE
        try:
            skops.io.dump(model, path)
            untrusted = untrusted_types(path)
            reason = f"the model holds types a skops file may not name: {untrusted}"
        except Exception as exc:  # skops raises many kinds for what it cannot serialize
            untrusted = [type(exc).__name__]
            reason = f"skops cannot serialize it: {exc}"
        if not untrusted:
            return self._info("skops", [_SKOPS_FILE], estimator=estimator)
        path.unlink(missing_ok=True)
        dump_pickle(model, folder / _PICKLE_FILE)
        return self._info(
            "pickle", [_PICKLE_FILE], pickle=True, estimator=estimator, fallback_reason=reason
        )

    def load(self, folder: Path, info: Mapping[str, Any]) -> Any:
        """Load the model.

        Raises:
            UnsafeArtifact: When the skops file names a type that is not trusted.
        """
        if info.get("format") == "pickle":
            return load_pickle(folder / _PICKLE_FILE)
        import skops.io

        path = folder / _SKOPS_FILE
        bad = untrusted_types(path)
        if bad:
            raise UnsafeArtifact(
                f"{path.name} names types that are not trusted: {', '.join(bad)}", types=bad
            )
        return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))

    def predict(self, model: Any, data: pd.DataFrame | np.ndarray) -> Any:
        """``model.predict`` (or ``transform`` for a transformer).

        A model fitted on an array (no ``feature_names_in_``) gets an array, so
        scikit-learn does not warn about the column names the signature gave.
        """
        if isinstance(data, pd.DataFrame) and not hasattr(model, "feature_names_in_"):
            data = data.to_numpy()
        if not hasattr(model, "predict") and hasattr(model, "transform"):
            return model.transform(data)
        return model.predict(data)


def untrusted_types(path: Path) -> list[str]:
    """The types named in a skops file that neither skops nor mlplane trusts."""
    import skops.io

    return [name for name in skops.io.get_untrusted_types(file=path) if not _trusted(name)]


def _trusted(name: str) -> bool:
    if name in TRUSTED_NAMES or name.startswith(_TRUSTED_WRAPPER_PREFIXES):
        return True
    return name.startswith(TRUSTED_PREFIXES) and isinstance(_resolve(name), type)


def _resolve(name: str) -> object | None:
    """The object ``module.qual.name`` names, importing only its (trusted) module."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None
