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

    A model registered through MLflow's API is a pyfunc of format ``"mlflow"``: the
    folder MLflow wrote, loaded with ``mlflow.pyfunc`` (the ``mlflow`` or
    ``mlflow-skinny`` distribution must be installed where it is loaded).
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
        if info.get("format") == "mlflow":
            return _load_mlflow(folder)
        return load_pickle(folder / _FILE)


def _load_mlflow(folder: Path) -> Any:
    try:
        import mlflow.pyfunc
    except ImportError:
        from mlplane.errors import InvalidInput

        raise InvalidInput(
            "this version was registered through MLflow's API; loading it needs MLflow: "
            "pip install mlflow-skinny"
        ) from None
    return mlflow.pyfunc.load_model(str(folder))
