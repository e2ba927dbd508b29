"""ONNX models, saved as ``model.onnx`` and run with onnxruntime on the CPU.

Input goes to the session in one of two ways (:func:`feeds`): when every
graph input is named like a column of the frame, each column is its own
input (what skl2onnx makes of a pipeline with mixed column types); otherwise
a model with a single input gets the whole frame as one 2-D array. Values
are cast to the element type each input declares.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplane.errors import InvalidInput
from mlplane.registry.flavors.base import Flavor, comes_from, qualified_name

_FILE = "model.onnx"
_ELEMENT_TYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}


class OnnxFlavor(Flavor):
    """An ``onnx.ModelProto``, or the path of a ``.onnx`` file.

    Saved as ``model.onnx`` (format ``"onnx"``); ``info`` also lists the
    ``opset`` per domain and the graph's ``inputs`` and ``outputs``. Loads as an
    ``onnxruntime.InferenceSession``; :meth:`predict` returns the first output
    (a classifier's labels) and :func:`run_all` every output.
    """

    name = "onnx"
    library = "onnx"

    @classmethod
    def handles(cls, model: object) -> bool:
        if isinstance(model, str | os.PathLike):
            return str(model).endswith(".onnx") and Path(model).is_file()
        if isinstance(model, type) or not comes_from(model, "onnx"):
            return False
        import onnx

        return isinstance(model, onnx.ModelProto)

    def save(
        self, model: object, folder: Path, *, input_example: pd.DataFrame | np.ndarray | None = None
    ) -> dict[str, Any]:
        import onnx

        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(model, str | os.PathLike):
            model = onnx.load(str(model))
        if not isinstance(model, onnx.ModelProto):
            raise TypeError(f"not an ONNX model: {qualified_name(type(model))}")
        onnx.checker.check_model(model)
        onnx.save_model(model, str(folder / _FILE))
        return self._info("onnx", [_FILE], **describe(model))

    def load(self, folder: Path, info: Mapping[str, Any]) -> Any:
        return session(folder / _FILE)

    def predict(self, model: Any, data: pd.DataFrame | np.ndarray) -> Any:
        """The first output of the graph (``model`` may also be a ModelProto or a path)."""
        return next(iter(run_all(as_session(model), data).values()))


def describe(model: Any) -> dict[str, Any]:
    """The opset per domain (``ai.onnx`` for the default one) and the input and output names."""
    return {
        "opset": {(op.domain or "ai.onnx"): int(op.version) for op in model.opset_import},
        "inputs": [i.name for i in model.graph.input],
        "outputs": [o.name for o in model.graph.output],
    }


def session(model: Path | bytes) -> Any:
    """An onnxruntime CPU session that logs only errors."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # converters declare shapes ORT then warns about per call
    source = str(model) if isinstance(model, Path) else model
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def as_session(model: Any) -> Any:
    """A session for a session, a ``ModelProto`` or the path of a ``.onnx`` file."""
    if hasattr(model, "run") and hasattr(model, "get_inputs"):
        return model
    if isinstance(model, str | os.PathLike):
        return session(Path(model))
    return session(model.SerializeToString())


def run_all(sess: Any, data: pd.DataFrame | np.ndarray) -> dict[str, Any]:
    """Every output of the session, by name, for the data."""
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds(sess, data)), strict=True))


def feeds(sess: Any, data: pd.DataFrame | np.ndarray) -> dict[str, np.ndarray]:
    """The session's inputs made from a frame or array (see the module docstring).

    Raises:
        InvalidInput: When the graph has several inputs and the frame lacks columns
            named like them.
    """
    inputs = sess.get_inputs()
    if isinstance(data, pd.DataFrame) and all(i.name in data.columns for i in inputs):
        return {i.name: _column(data[i.name], i) for i in inputs}
    if len(inputs) == 1:
        array = data.to_numpy() if isinstance(data, pd.DataFrame) else np.asarray(data)
        return {inputs[0].name: _cast(array, inputs[0].type)}
    names = [i.name for i in inputs]
    raise InvalidInput(f"the ONNX model takes the inputs {names}; pass columns with these names")


def _column(series: pd.Series, graph_input: Any) -> np.ndarray:
    values = _cast(series.to_numpy(), graph_input.type)
    rank = len(graph_input.shape) if graph_input.shape else 2
    return values.reshape(-1, 1) if rank == 2 else values


def _cast(values: np.ndarray, element_type: str) -> np.ndarray:
    dtype = _ELEMENT_TYPES.get(element_type)
    if dtype is None:
        return values
    if dtype is object:
        return values.astype(str).astype(object) if values.dtype.kind != "O" else values
    return values.astype(dtype)
