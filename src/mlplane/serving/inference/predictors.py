"""How a loaded version is asked to predict a batch: the fast path for numeric columns.

A version's signature decides the *kind* of data a request becomes:

* ``rows``: every input column is a number (``float*``, ``int*``, ``uint*``). A request is a
  2-D float64 array in signature column order, a batch is those arrays stacked. For a
  scikit-learn model the array goes straight to the estimator: one fitted on a DataFrame
  gets a shallow copy without ``feature_names_in_`` (the columns are already in its order),
  which skips pandas and the feature-name check (a DataFrame round trip costs more than
  the prediction of a small model). A warm-up checks that this path answers exactly like
  :meth:`~mlplane.registry.flavors.base.PyFuncModel.predict` on the example and raises no
  warning; otherwise (and for other flavors) the batch becomes a DataFrame per call and
  goes through ``PyFuncModel.predict`` with its signature enforcement.
* ``tensor``: the signature is one tensor; a request is an array of its shape.
* ``frame``: anything else (strings, dates, no signature): a request is a DataFrame,
  checked with :func:`~mlplane.registry.signature.enforce` before it joins a batch.

``batching: auto`` is decided here too: on when predicting 32 rows costs per row well
below (under half) what one row costs.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlplane.errors import InvalidInput
from mlplane.registry.flavors.base import PyFuncModel
from mlplane.registry.signature import ColumnSpec, enforce

ROWS, TENSOR, FRAME = "rows", "tensor", "frame"
NUMERIC_KINDS = ("float", "int", "uint")
EXAMPLE_FILE = "input_example.parquet"


def type_kind(type_: str) -> str:
    """``float64`` -> ``float``, ``datetime64[ns]`` -> ``datetime64``."""
    if "[" in type_:
        return type_[: type_.index("[")]
    return type_.rstrip("0123456789")


class Predictor:
    """Predicts batches of one loaded version; built and warmed by :meth:`warm`.

    Attributes:
        kind: ``rows``, ``tensor`` or ``frame`` (see the module docstring).
        names: The signature's input columns, in order (empty for a tensor or no signature).
        specs: The input column specs, in order.
        tensor: The tensor input spec, for ``tensor``.
        fast: Whether ``rows`` batches go straight to the native model.
        batching_helps: What the warm-up measured for ``batching: auto``.
    """

    def __init__(self, model: PyFuncModel) -> None:
        self.model = model
        sig = model.signature
        self.tensor: ColumnSpec | None = sig.tensor_input if sig is not None else None
        self.specs: list[ColumnSpec] = [] if sig is None or self.tensor else list(sig.inputs)
        self.names = [c.name for c in self.specs]
        numeric = bool(self.specs) and all(type_kind(c.type) in NUMERIC_KINDS for c in self.specs)
        self.kind = TENSOR if self.tensor is not None else ROWS if numeric else FRAME
        self._native: Callable[[Any], Any] | None = None
        self.batching_helps = False
        self.warm_ms = 0.0

    @property
    def fast(self) -> bool:
        return self._native is not None

    # -- batches ---------------------------------------------------------------------------

    def predict(self, batch: Any) -> Any:
        """The model's output for one batch (an array, or a DataFrame)."""
        if self.kind == ROWS:
            if self._native is not None:
                return np.asarray(self._native(batch))
            return self.model.predict(pd.DataFrame(batch, columns=self.names))
        if self.kind == FRAME and self.model.signature is not None:
            # Each request was enforced before it joined; the batch needs no second pass.
            out = self.model.flavor.predict(self.model.model, batch)
            return out if isinstance(out, pd.DataFrame | np.ndarray) else np.asarray(out)
        return self.model.predict(batch)

    def concat(self, parts: list[Any]) -> Any:
        if self.kind == FRAME:
            return pd.concat(parts, ignore_index=True)
        return np.concatenate(parts)

    @staticmethod
    def split(out: Any, sizes: Sequence[int]) -> list[Any]:
        if len(out) != sum(sizes):
            raise InvalidInput(f"the model returned {len(out)} predictions for {sum(sizes)} rows")
        parts, start = [], 0
        frame = isinstance(out, pd.DataFrame)
        for n in sizes:
            parts.append(out.iloc[start : start + n] if frame else out[start : start + n])
            start += n
        return parts

    def prepare_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One ``frame`` request, checked against the signature (before it joins a batch)."""
        if self.model.signature is None:
            return frame
        return enforce(self.model.signature, frame)

    # -- warm-up ---------------------------------------------------------------------------

    def warm(self, example: pd.DataFrame | None) -> None:
        """Predict once on the example, choose the fast path, time 1 row against 32."""
        start = time.perf_counter()
        sample = self._sample(example)
        reference = self.model.predict(sample)
        if self.kind == ROWS:
            rows = sample[self.names].to_numpy(dtype=np.float64)
            self._native = _checked_native(self.model, self.names, rows, reference)
            sample = rows
        elif self.kind == FRAME:
            sample = self.prepare_frame(sample)
        self.predict(sample)
        one = sample[:1]
        many = self.concat([one] * 32)
        t1 = _best(lambda: self.predict(one), 5)
        t32 = _best(lambda: self.predict(many), 3)
        self.batching_helps = t32 / 32 < 0.5 * t1
        self.warm_ms = (time.perf_counter() - start) * 1000

    def _sample(self, example: pd.DataFrame | None) -> Any:
        if self.tensor is not None:
            if isinstance(example, np.ndarray):
                return example
            shape = [1 if d < 0 else d for d in self.tensor.shape or (1,)]
            return np.zeros(shape, dtype=_dtype(self.tensor.type))
        if example is not None and len(example):
            return example
        if not self.specs:
            raise InvalidInput("a model without a signature or an input example cannot be warmed")
        plain = ("bool", *NUMERIC_KINDS)
        return pd.DataFrame({c.name: [_zero(c.type)] for c in self.specs}).astype(
            {c.name: c.type for c in self.specs if type_kind(c.type) in plain}
        )


def read_example(folder: Path) -> pd.DataFrame | None:
    """The version's input example, when it was registered with one."""
    path = folder / EXAMPLE_FILE
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError):
        return None


def _checked_native(
    model: PyFuncModel, names: list[str], rows: np.ndarray, reference: Any
) -> Callable[[Any], Any] | None:
    """The native model's predict on a float array, if it answers like PyFuncModel."""
    if model.flavor.name != "sklearn":
        return None
    fitted = getattr(model.model, "feature_names_in_", None)
    if fitted is not None and [str(n) for n in fitted] != names:
        return None  # fitted on other columns or another order: keep pandas
    est = _unnamed(model.model)
    method = est.predict if hasattr(est, "predict") else getattr(est, "transform", None)
    if method is None:
        return None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = method(rows)
    except Exception:
        return None
    if caught or not _same(np.asarray(got), reference):
        return None
    return method  # type: ignore[no-any-return]


def _unnamed(est: Any) -> Any:
    """A shallow copy of ``est`` that was not told its feature names (a pipeline's first
    step likewise), so it takes an array without a warning; the fitted state is shared."""
    steps = getattr(est, "steps", None)
    if isinstance(steps, list) and steps and isinstance(steps[0], tuple):
        out = copy.copy(est)
        out.steps = [(steps[0][0], _unnamed(steps[0][1])), *steps[1:]]
        return out
    if "feature_names_in_" in getattr(est, "__dict__", {}):
        out = copy.copy(est)
        del out.feature_names_in_
        return out
    return est


def _same(got: np.ndarray, reference: Any) -> bool:
    if isinstance(reference, pd.DataFrame):
        return False
    ref = np.asarray(reference)
    if got.shape != ref.shape or got.dtype.kind != ref.dtype.kind:
        return False
    if got.dtype.kind == "f":
        return bool(np.allclose(got, ref, rtol=1e-12, atol=0, equal_nan=True))
    return bool(np.array_equal(got, ref))


def _best(fn: Callable[[], Any], n: int) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _dtype(type_: str) -> Any:
    return object if type_kind(type_) in ("string", "binary", "object") else np.dtype(type_)


def _zero(type_: str) -> Any:
    kind = type_kind(type_)
    if kind == "bool":
        return False
    if kind in ("string", "binary", "object"):
        return ""
    if kind == "datetime64":
        return pd.Timestamp(0)
    if kind == "timedelta64":
        return pd.Timedelta(0)
    return 0
