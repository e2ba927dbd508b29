"""The :class:`Flavor` interface and :class:`PyFuncModel`, the uniform predict over any flavor."""

from __future__ import annotations

import abc
import importlib.metadata
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from mlplane.registry.signature import Signature, enforce, enforce_tensor, to_frame

PICKLE_PROTOCOL = 5


class Flavor(abc.ABC):
    """How one kind of model is detected, saved into a folder, loaded and asked to predict.

    A flavor keeps no state: the registry detects one per model, calls
    :meth:`save` and records the returned info with the version, and later
    hands the same info back to :meth:`load`.

    Attributes:
        name: The flavor's name, recorded in ``info["flavor"]``.
        library: The distribution whose version :meth:`save` records.
    """

    name: ClassVar[str]
    library: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def handles(cls, model: object) -> bool:
        """Whether this flavor can save ``model``.

        Implementations look at the modules of ``type(model).__mro__`` before
        importing their (optional) library, so detection never imports one
        the model does not come from.
        """

    @abc.abstractmethod
    def save(
        self, model: object, folder: Path, *, input_example: pd.DataFrame | np.ndarray | None = None
    ) -> dict[str, Any]:
        """Write the model's files into ``folder``, creating it if needed.

        Args:
            model: A model this flavor handles.
            folder: Where to write; file names are relative to it.
            input_example: A few rows of input, for flavors that trace the model.

        Returns:
            JSON-able info: ``flavor``, ``format``, ``files``, ``library_version``,
            ``pickle`` (whether loading unpickles, so the registry must scan) and
            flavor-specific keys.
        """

    @abc.abstractmethod
    def load(self, folder: Path, info: Mapping[str, Any]) -> Any:
        """Load the native model that :meth:`save` wrote into ``folder``."""

    def predict(self, model: Any, data: pd.DataFrame | np.ndarray) -> Any:
        """Predict with a loaded native model; by default ``model.predict(data)``."""
        return model.predict(data)

    def library_version(self) -> str | None:
        """The installed version of :attr:`library`, or None if it is not installed."""
        try:
            return importlib.metadata.version(self.library)
        except importlib.metadata.PackageNotFoundError:
            return None

    def _info(
        self, fmt: str, files: list[str], *, pickle: bool = False, **extra: Any
    ) -> dict[str, Any]:
        return {
            "flavor": self.name,
            "format": fmt,
            "files": files,
            "library_version": self.library_version(),
            "pickle": pickle,
            **extra,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def comes_from(model: object, *packages: str) -> bool:
    """Whether ``type(model)`` or one of its bases is defined in one of ``packages``."""
    return any(cls.__module__.split(".")[0] in packages for cls in type(model).__mro__)


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def library_base(model: object, package: str) -> type:
    """The first class in ``type(model).__mro__`` defined in ``package``.

    A user's subclass of a library model is saved and loaded as that library
    class, so loading never imports the user's module.
    """
    for cls in type(model).__mro__:
        if cls.__module__.split(".")[0] == package:
            return cls
    raise TypeError(f"{qualified_name(type(model))} does not derive from a {package} class")


def dump_pickle(obj: object, path: Path, *, cloud: bool = False) -> str:
    """Pickle ``obj`` to ``path`` (with cloudpickle when asked and importable).

    Returns:
        The serializer used: ``"cloudpickle"`` or ``"pickle"``.
    """
    dumper: Any = pickle
    if cloud:
        try:
            import cloudpickle

            dumper = cloudpickle
        except ImportError:
            pass
    with path.open("wb") as f:
        dumper.dump(obj, f, protocol=PICKLE_PROTOCOL)
    return "cloudpickle" if dumper is not pickle else "pickle"


def load_pickle(path: Path) -> Any:
    """Unpickle ``path``. Only call this on files the registry's scan has passed."""
    with path.open("rb") as f:
        return pickle.load(f)  # the registry scans every pickle before it is loaded


class PyFuncModel:
    """A loaded model with one ``predict`` over every input kind, checked against its signature.

    Args:
        flavor: The flavor that loaded ``model``.
        model: The native model, as :meth:`Flavor.load` returned it.
        signature: The version's signature; when given, input is checked and
            cast with :func:`~mlplane.registry.signature.enforce` first.
    """

    def __init__(self, flavor: Flavor, model: Any, signature: Signature | None = None) -> None:
        self.flavor = flavor
        self.model = model
        self.signature = signature

    def predict(self, data: Any) -> np.ndarray | pd.DataFrame:
        """Predict on a DataFrame, NumPy array, Arrow Table or RecordBatch, or list of dicts.

        NumPy input takes its column names from the signature. A model whose
        signature is one tensor gets an array instead of a frame.

        Returns:
            A NumPy array, or a DataFrame when the model returns one.

        Raises:
            InvalidInput: When the input is of another kind or does not match the signature.
        """
        tensor = self.signature.tensor_input if self.signature is not None else None
        if tensor is not None:
            frame_like = isinstance(data, pd.DataFrame | pa.Table | pa.RecordBatch)
            array = to_frame(data, None).to_numpy() if frame_like else data
            return _as_output(self.flavor.predict(self.model, enforce_tensor(tensor, array)))
        frame = to_frame(data, self.signature)
        if self.signature is not None:
            frame = enforce(self.signature, frame)
        return _as_output(self.flavor.predict(self.model, frame))

    def __repr__(self) -> str:
        return f"PyFuncModel(flavor={self.flavor.name!r}, model={type(self.model).__name__})"


def _as_output(out: Any) -> np.ndarray | pd.DataFrame:
    if isinstance(out, pd.DataFrame | np.ndarray):
        return out
    if isinstance(out, pd.Series):
        return out.to_numpy()
    return np.asarray(out)
