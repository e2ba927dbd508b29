"""Conversion to ONNX, checked for parity on the input example, and int8 quantization.

:func:`to_onnx` picks the converter by flavor: skl2onnx for scikit-learn,
onnxmltools for XGBoost and LightGBM, ``torch.onnx`` for PyTorch. It then
runs the converted model with onnxruntime on the input example and compares
it with the native model: probabilities for classifiers that give them (and
the share of equal labels), the outputs otherwise. A model no converter
handles is not an error: registration goes on without ONNX, and the returned
info says why (``{"file": None, "reason": ...}``).

Input layout: a model taking only numeric columns gets one float tensor
``input`` of shape ``[None, n_columns]``; a scikit-learn model that selects
columns by name (a ``ColumnTransformer``) or takes strings gets one ``[None,
1]`` input per column, named like the column. The ONNX flavor's
:func:`~mlplane.registry.flavors.onnx.feeds` understands both.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplane.registry.flavors.base import Flavor
from mlplane.registry.flavors.onnx import describe, run_all, session
from mlplane.registry.signature import to_frame

logger = logging.getLogger(__name__)

SKLEARN_OPSET = {"": 17, "ai.onnx.ml": 3}
"""Opsets asked of skl2onnx (what onnxruntime 1.18, the oldest we support, runs)."""
ONNXMLTOOLS_OPSET = 15
"""The newest opset onnxmltools' tree converters support."""
TORCH_OPSET = 17
PARITY_RTOL = 1e-3
PARITY_ATOL = 1e-4
"""``parity_ok`` is ``numpy.allclose`` with these (probabilities or regression outputs)."""

_FILE = "model.onnx"


def to_onnx(
    model: object, flavor: Flavor, input_example: pd.DataFrame, folder: Path
) -> dict[str, Any]:
    """Convert ``model`` to ``folder/model.onnx`` and check it against the native model.

    Never raises for a model that cannot be converted.

    Args:
        model: The native model (as given to, or loaded by, ``flavor``).
        flavor: Its flavor.
        input_example: A few rows of input; also fixes the ONNX input types.
        folder: Where ``model.onnx`` goes; created if needed.

    Returns:
        On success ``file`` (``"model.onnx"``), ``converter``, ``opset`` (per domain),
        ``inputs``, ``outputs``, ``parity_max_abs_diff`` (None when only labels
        could be compared), ``parity_label_agreement`` (classifiers) and
        ``parity_ok``. Otherwise ``{"file": None, "reason": ...}``.
    """
    if flavor.name not in _CONVERTERS:
        why = "it is ONNX already" if flavor.name == "onnx" else "no converter applies"
        return _skipped(f"not converted to ONNX: {why} ({flavor.name} flavor)")
    frame = to_frame(input_example, None)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _FILE
    name, converter = _CONVERTERS[flavor.name]
    try:
        proto = converter(model, frame, path)
    except Exception as exc:  # converters raise anything for what they do not support
        _discard(path)
        return _skipped(f"{name} could not convert the model: {type(exc).__name__}: {exc}")
    try:
        import onnx

        onnx.save_model(proto, str(path))
        parity = _parity(model, flavor, session(path), frame)
    except Exception as exc:
        _discard(path)
        return _skipped(f"the ONNX model from {name} does not match on the example: {exc}")
    return {"file": _FILE, "converter": name, **describe(proto), **parity}


def _skipped(reason: str) -> dict[str, Any]:
    logger.info("%s", reason)
    return {"file": None, "reason": reason}


def _discard(path: Path) -> None:
    """Remove a failed conversion's file, and its folder if nothing else is in it."""
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()


# -- converters: (model, example frame, target path) -> ModelProto ---------------------------


def _skl2onnx(model: Any, frame: pd.DataFrame, path: Path) -> Any:
    from skl2onnx import convert_sklearn

    final = model
    while hasattr(final, "steps"):
        final = final.steps[-1][1]
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    layouts = []
    if _all_numeric(frame) and not _selects_by_name(model):
        layouts.append([_single_input(frame, "skl2onnx")])
    layouts.append(_column_inputs(frame))
    errors = []
    for types in layouts:
        try:
            return convert_sklearn(
                model, initial_types=types, options=options, target_opset=SKLEARN_OPSET
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    raise RuntimeError("; ".join(errors))


def _onnxmltools_xgboost(model: Any, frame: pd.DataFrame, path: Path) -> Any:
    import onnxmltools

    # onnxmltools reads the features as f0, f1, ..: drop the names, on a copy.
    if hasattr(model, "get_booster"):
        model = copy.deepcopy(model)
        model.get_booster().feature_names = None
    else:
        model = model.copy()
        model.feature_names = None
    types = [_single_input(frame, "onnxmltools")]
    return onnxmltools.convert_xgboost(model, initial_types=types, target_opset=ONNXMLTOOLS_OPSET)


def _onnxmltools_lightgbm(model: Any, frame: pd.DataFrame, path: Path) -> Any:
    import onnxmltools

    from mlplane.registry.flavors.lightgbm import BoosterRegressor

    if isinstance(model, BoosterRegressor):  # a loaded wrapper: convert its Booster
        model = model.booster_
    types = [_single_input(frame, "onnxmltools")]
    return onnxmltools.convert_lightgbm(
        model, initial_types=types, target_opset=ONNXMLTOOLS_OPSET, zipmap=False
    )


def _torch_onnx(model: Any, frame: pd.DataFrame, path: Path) -> Any:
    import onnx
    import torch

    from mlplane.registry.flavors.torch import to_tensor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, not gone
        torch.onnx.export(
            model,
            (to_tensor(model, frame),),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=TORCH_OPSET,
            dynamo=False,
        )
    return onnx.load(str(path))


_Converter = Callable[[Any, pd.DataFrame, Path], Any]
_CONVERTERS: dict[str, tuple[str, _Converter]] = {
    "sklearn": ("skl2onnx", _skl2onnx),
    "xgboost": ("onnxmltools", _onnxmltools_xgboost),
    "lightgbm": ("onnxmltools", _onnxmltools_lightgbm),
    "torch": ("torch.onnx", _torch_onnx),
}
"""Per flavor: the converter's name (recorded as ``converter``) and the function."""


def _all_numeric(frame: pd.DataFrame) -> bool:
    return all(
        pd.api.types.is_numeric_dtype(t) or pd.api.types.is_bool_dtype(t) for t in frame.dtypes
    )


def _selects_by_name(model: Any) -> bool:
    """Whether a ColumnTransformer sits anywhere in the model (it selects columns by name)."""
    from sklearn.compose import ColumnTransformer

    if isinstance(model, ColumnTransformer):
        return True
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    return any(isinstance(v, ColumnTransformer) for v in params.values())


def _single_input(frame: pd.DataFrame, library: str) -> tuple[str, Any]:
    if library == "skl2onnx":
        from skl2onnx.common.data_types import FloatTensorType
    else:
        from onnxmltools.convert.common.data_types import FloatTensorType
    return ("input", FloatTensorType([None, frame.shape[1]]))


def _column_inputs(frame: pd.DataFrame) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import (
        BooleanTensorType,
        FloatTensorType,
        Int64TensorType,
        StringTensorType,
    )

    types = []
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            kind: Any = BooleanTensorType
        elif pd.api.types.is_integer_dtype(dtype):
            kind = Int64TensorType
        elif pd.api.types.is_float_dtype(dtype):
            kind = FloatTensorType
        elif pd.api.types.is_string_dtype(dtype):
            kind = StringTensorType
        else:
            raise TypeError(f"column {name!r} has type {dtype}, which has no ONNX input type")
        types.append((str(name), kind([None, 1])))
    return types


# -- parity -----------------------------------------------------------------------------------


def _parity(model: Any, flavor: Flavor, sess: Any, frame: pd.DataFrame) -> dict[str, Any]:
    outputs = run_all(sess, frame)
    names = list(outputs)
    proba_name = next((n for n in names if "prob" in n.lower()), None)
    labels = flavor.predict(model, frame)
    if proba_name is not None:
        has_proba = hasattr(model, "predict_proba")
        native = _call_proba(model, flavor, frame) if has_proba else labels
        result: dict[str, Any] = {
            "parity_max_abs_diff": _max_abs_diff(native, outputs[proba_name]),
            "parity_ok": _close(native, outputs[proba_name]),
        }
        if has_proba:
            result["parity_label_agreement"] = _agreement(model, labels, outputs[names[0]])
        return result
    main = outputs[names[0]]
    if np.asarray(main).dtype.kind in "iuOUSb":  # labels only
        agreement = _agreement(model, labels, main)
        return {
            "parity_max_abs_diff": None,
            "parity_label_agreement": agreement,
            "parity_ok": agreement == 1.0,
        }
    return {"parity_max_abs_diff": _max_abs_diff(labels, main), "parity_ok": _close(labels, main)}


def _call_proba(model: Any, flavor: Flavor, frame: pd.DataFrame) -> Any:
    if flavor.name == "sklearn" and not hasattr(model, "feature_names_in_"):
        return model.predict_proba(frame.to_numpy())
    return model.predict_proba(frame)


def _aligned(native: Any, converted: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both as float arrays of one shape (a binary model's 1-D p(class 1) vs 2 columns)."""
    a = np.asarray(native, dtype=np.float64)
    b = np.asarray(converted, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if b.ndim == 2 and b.shape[1] == 1:
        b = b[:, 0]
    if a.ndim == 1 and b.ndim == 2 and b.shape[1] == 2:
        b = b[:, 1]
    if a.shape != b.shape:
        raise ValueError(f"native output has shape {a.shape} but ONNX output {b.shape}")
    return a, b


def _max_abs_diff(native: Any, converted: Any) -> float:
    a, b = _aligned(native, converted)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _close(native: Any, converted: Any) -> bool:
    a, b = _aligned(native, converted)
    return bool(np.allclose(a, b, rtol=PARITY_RTOL, atol=PARITY_ATOL))


def _agreement(model: Any, native: Any, converted: Any) -> float:
    """The share of equal labels; ONNX class indices are mapped through ``classes_``."""
    a = np.asarray(native).reshape(-1)
    b = np.asarray(converted).reshape(-1)
    classes = getattr(model, "classes_", None)
    if classes is not None and b.dtype.kind in "iu" and a.dtype.kind not in "iu":
        b = np.asarray(classes)[b]
    return float(np.mean(a == b)) if a.size else 1.0


# -- quantization -----------------------------------------------------------------------------


def quantize(
    onnx_path: Path,
    out_path: Path,
    *,
    example: pd.DataFrame | None = None,
    reference: Callable[[pd.DataFrame], Any] | None = None,
) -> dict[str, Any]:
    """Quantize the weights of an ONNX model to int8 (dynamic quantization).

    Only some operators (``MatMul``, ``Gemm``, convolutions, ..) have int8 forms;
    tree ensembles come out the same size.

    Args:
        onnx_path: The float model.
        out_path: Where the quantized model goes.
        example: Input to compare the two models on.
        reference: Gives the expected output for ``example`` (for instance the
            native model's ``predict_proba``); by default the float ONNX model's.

    Returns:
        ``file`` (the name of ``out_path``), ``size_before`` and ``size_after``
        in bytes and, with an example, ``max_abs_diff`` (on probabilities for a
        classifier) and, for a classifier compared with the float model,
        ``label_agreement``.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = onnx_path
        try:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(onnx_path, prepared, skip_symbolic_shape=True)
            source = prepared
        except Exception as exc:  # pre-processing only helps; quantize the model as it is
            logger.info("quantization pre-processing skipped: %s", exc)
        quantize_dynamic(
            source,
            out_path,
            weight_type=QuantType.QInt8,
            # Shape inference knows no types after ai.onnx.ml operators (a skl2onnx
            # Scaler before a MatMul); the models we convert compute in float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    result: dict[str, Any] = {
        "file": out_path.name,
        "size_before": onnx_path.stat().st_size,
        "size_after": out_path.stat().st_size,
    }
    if example is not None:
        result.update(_quantized_diff(onnx_path, out_path, example, reference))
    return result


def _quantized_diff(
    onnx_path: Path,
    out_path: Path,
    example: pd.DataFrame,
    reference: Callable[[pd.DataFrame], Any] | None,
) -> dict[str, Any]:
    quantized = run_all(session(out_path), example)
    names = list(quantized)
    proba_name = next((n for n in names if "prob" in n.lower()), None)
    main = proba_name or names[0]
    out: dict[str, Any] = {}
    if reference is None:
        floating = run_all(session(onnx_path), example)
        expected = floating[main]
        if proba_name is not None and proba_name != names[0]:
            out["label_agreement"] = _agreement(None, floating[names[0]], quantized[names[0]])
    else:
        expected = reference(example)
    out["max_abs_diff"] = _max_abs_diff(expected, quantized[main])
    return out


__all__ = ["quantize", "to_onnx"]
