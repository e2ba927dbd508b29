"""Any other object with a callable ``predict``, pickled (cloudpickle when installed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplane.registry.flavors.base import Flavor, dump_pickle, load_pickle, qualified_name

_FILE = "model.pkl"


class PyFuncFlavor(Flavor):
    """The last resort: an object whose ``predict(frame)`` the registry calls as is.

    Saved as ``model.pkl`` (format ``"pickle"``, ``info["pickle"] = True``)
    with cloudpickle, which also carries classes and functions defined in a
    notebook or script by value, or with pickle when cloudpickle is missing
    (``info["serializer"]`` says which). ``info["class"]`` names the model's class.
    """

    name = "pyfunc"
    library = "cloudpickle"

    @classmethod
    def handles(cls, model: object) -> bool:
        return not isinstance(model, type) and callable(getattr(model, "predict", None))

    def save(
        self, model: object, folder: Path, *, input_example: pd.DataFrame | np.ndarray | None = None
    ) -> dict[str, Any]:
        folder.mkdir(parents=True, exist_ok=True)
        serializer = dump_pickle(model, folder / _FILE, cloud=True)
        return self._info(
            "pickle",
            [_FILE],
            pickle=True,
            serializer=serializer,
            **{"class": qualified_name(type(model))},
        )

    def load(self, folder: Path, info: Mapping[str, Any]) -> Any:
        return load_pickle(folder / _FILE)
