"""Model signatures: the columns (or tensor) a model takes and returns.

A :class:`Signature` is inferred from an input example when a version is
registered and checked on every prediction, so a caller that sends the wrong
columns gets :class:`~mlplane.errors.InvalidInput` naming them instead of a
model that silently predicts garbage.

Types are short strings: ``bool``, ``int8`` .. ``int64``, ``uint8`` ..
``uint64``, ``float16`` .. ``float64``, ``string``, ``binary``,
``datetime64[<unit>]`` (optionally with a time zone, as pandas spells it),
``timedelta64[<unit>]`` and ``object`` (anything; never checked).

Column names for NumPy input: a 2-D array's columns are named ``x0``, ``x1``,
.. (the names scikit-learn gives features it was fitted on without names), a
2-D output's ``y0``, ``y1``, .. and a 1-D output is the single column ``y``.
An array with more than two dimensions is a tensor: one :class:`ColumnSpec`
(``input`` or ``output``) whose ``shape`` has ``-1`` for the batch axis.

Casting in :func:`enforce` is by value where it matters: integers become
floats, narrower or wider integers become the expected width when the values
fit, floats become integers only when every value is whole, ISO 8601 strings
become datetimes. Strings are never turned into numbers and numbers never
into strings.

A column can be marked ``sensitive`` (:meth:`Signature.with_sensitive`, or
``sensitive=`` at registration): it is checked like any other, and masked
wherever payloads are kept (serving's payload capture).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlplane.errors import InvalidInput

_SIMPLE_TYPES = frozenset(
    {"bool", "string", "binary", "object"}
    | {f"int{b}" for b in (8, 16, 32, 64)}
    | {f"uint{b}" for b in (8, 16, 32, 64)}
    | {f"float{b}" for b in (16, 32, 64)}
)
_TIME_TYPE = re.compile(r"^(datetime64|timedelta64)\[[a-z]+(, .+)?\]$")
# pandas.api.types.infer_dtype of an object column → our type.
_INFERRED = {
    "string": "string",
    "bytes": "binary",
    "boolean": "bool",
    "integer": "int64",
    "floating": "float64",
    "mixed-integer-float": "float64",
    "decimal": "float64",
    "datetime": "datetime64[ns]",
    "datetime64": "datetime64[ns]",
}


@dataclass(frozen=True)
class ColumnSpec:
    """One named input or output column.

    Attributes:
        name: The column name.
        type: The type string (see the module docstring).
        shape: For a tensor, its shape with ``-1`` for free axes; ``None`` for a column.
        sensitive: Masked before payloads are captured; never changes enforcement.
    """

    name: str
    type: str
    shape: tuple[int, ...] | None = None
    sensitive: bool = False

    def __post_init__(self) -> None:
        if self.type not in _SIMPLE_TYPES and not _TIME_TYPE.match(self.type):
            raise InvalidInput(f"unknown column type {self.type!r} for column {self.name!r}")
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form."""
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.shape is not None:
            out["shape"] = list(self.shape)
        if self.sensitive:
            out["sensitive"] = True
        return out


@dataclass(frozen=True)
class Signature:
    """What a model takes (``inputs``) and, when known, what it returns (``outputs``).

    Lists passed in are stored as tuples, so a signature is immutable and hashable.
    """

    inputs: Sequence[ColumnSpec]
    outputs: Sequence[ColumnSpec] | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if self.outputs is not None:
            object.__setattr__(self, "outputs", tuple(self.outputs))
        names = [c.name for c in self.inputs]
        if len(set(names)) != len(names):
            raise InvalidInput(f"signature input names repeat: {names}")

    @property
    def input_names(self) -> list[str]:
        """The input column names, in order."""
        return [c.name for c in self.inputs]

    @property
    def tensor_input(self) -> ColumnSpec | None:
        """The single tensor input, if the model takes one tensor rather than columns."""
        if len(self.inputs) == 1 and self.inputs[0].shape is not None:
            return self.inputs[0]
        return None

    @property
    def sensitive_names(self) -> list[str]:
        """The names of the columns (inputs, then outputs) marked sensitive."""
        return [c.name for c in (*self.inputs, *(self.outputs or ())) if c.sensitive]

    def with_sensitive(self, names: Sequence[str]) -> Signature:
        """A copy with the input or output columns ``names`` marked sensitive.

        Raises:
            InvalidInput: When a name is not a column of the signature.
        """
        wanted = {str(n) for n in names}
        outputs = tuple(self.outputs or ())
        known = {c.name for c in (*self.inputs, *outputs)}
        unknown = sorted(wanted - known)
        if unknown:
            raise InvalidInput(
                f"cannot mark {unknown} sensitive: the signature's columns are {sorted(known)}",
                unknown=unknown,
            )

        def mark(cols: Sequence[ColumnSpec]) -> list[ColumnSpec]:
            return [replace(c, sensitive=True) if c.name in wanted else c for c in cols]

        return Signature(mark(self.inputs), None if self.outputs is None else mark(outputs))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form: ``{"inputs": [...], "outputs": [...] | None}``."""
        outputs = None if self.outputs is None else [c.to_dict() for c in self.outputs]
        return {"inputs": [c.to_dict() for c in self.inputs], "outputs": outputs}

    def to_json(self) -> str:
        """The signature as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        """Read the form written by :meth:`to_dict`.

        Raises:
            InvalidInput: When a key is missing or a type is unknown.
        """
        try:
            inputs = [_spec_from_dict(c) for c in data["inputs"]]
            raw_outputs = data.get("outputs")
            outputs = None if raw_outputs is None else [_spec_from_dict(c) for c in raw_outputs]
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"malformed signature: {exc!r}") from None
        return cls(inputs=inputs, outputs=outputs)

    @classmethod
    def from_json(cls, text: str) -> Signature:
        """Read the JSON written by :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"signature is not valid JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise InvalidInput("signature JSON must be an object with 'inputs'")
        return cls.from_dict(data)


def _spec_from_dict(data: Mapping[str, Any]) -> ColumnSpec:
    shape = data.get("shape")
    return ColumnSpec(
        str(data["name"]),
        str(data["type"]),
        None if shape is None else tuple(shape),
        sensitive=bool(data.get("sensitive", False)),
    )


def infer_signature(input_example: Any, output: Any | None = None) -> Signature:
    """Infer a signature from an input example and, optionally, the model's output on it.

    Args:
        input_example: A pandas DataFrame, NumPy array, Arrow Table or RecordBatch,
            list of dicts or dict of columns.
        output: The model's output for the example (array, Series or DataFrame), or None.

    Returns:
        The signature; ``outputs`` is None when no output is given.
    """
    if isinstance(input_example, np.ndarray) and input_example.ndim > 2:
        inputs = [_tensor_spec("input", input_example)]
    else:
        inputs = _frame_specs(to_frame(input_example, None))
    return Signature(inputs=inputs, outputs=None if output is None else _output_specs(output))


def _output_specs(output: Any) -> list[ColumnSpec]:
    if isinstance(output, pd.Series):
        return [ColumnSpec(str(output.name) if output.name is not None else "y", _type_of(output))]
    if isinstance(output, pd.DataFrame | pa.Table | pa.RecordBatch):
        return _frame_specs(to_frame(output, None))
    array = np.asarray(output)
    if array.ndim > 2:
        return [_tensor_spec("output", array)]
    if array.ndim <= 1:
        return [ColumnSpec("y", _type_of(pd.Series(array.reshape(-1))))]
    frame = pd.DataFrame(array, columns=[f"y{i}" for i in range(array.shape[1])])
    return _frame_specs(frame)


def _tensor_spec(name: str, array: np.ndarray) -> ColumnSpec:
    return ColumnSpec(name, _type_of(pd.Series(array.reshape(-1)[:0])), (-1, *array.shape[1:]))


def _frame_specs(frame: pd.DataFrame) -> list[ColumnSpec]:
    return [ColumnSpec(str(name), _type_of(frame[name])) for name in frame.columns]


def _type_of(series: pd.Series) -> str:
    """Our type string for a pandas column."""
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _type_of(pd.Series(dtype.categories))
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        name = str(np.dtype(getattr(dtype, "numpy_dtype", dtype)).name)
        return name if name in _SIMPLE_TYPES else "object"  # complex, float128
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return str(dtype)
    if isinstance(dtype, pd.StringDtype):
        return "string"
    return _INFERRED.get(pd.api.types.infer_dtype(series, skipna=True), "object")


def to_frame(data: Any, signature: Signature | None) -> pd.DataFrame:
    """Turn model input into a DataFrame.

    Args:
        data: A DataFrame (returned as is), NumPy array (1-D is one column, 2-D is
            columns), Arrow Table or RecordBatch, list of dicts (records), list of
            rows, or dict of columns.
        signature: Names the columns of NumPy input; without one they are ``x0``, ``x1``, ..

    Raises:
        InvalidInput: For other kinds of input, or NumPy input whose column count
            differs from the signature's.
    """
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, pa.Table | pa.RecordBatch):
        return data.to_pandas()
    if isinstance(data, Mapping):
        if all(np.ndim(v) == 0 for v in data.values()):
            return pd.DataFrame([data])
        return pd.DataFrame(dict(data))
    if isinstance(data, list | tuple):
        if not data:
            names = signature.input_names if signature else []
            return pd.DataFrame({name: [] for name in names})
        if all(isinstance(row, Mapping) for row in data):
            return pd.DataFrame(list(data))
        data = np.asarray(data)
    if isinstance(data, np.ndarray):
        return _array_frame(data, signature)
    raise InvalidInput(
        f"cannot predict on {type(data).__module__}.{type(data).__qualname__}; pass a pandas "
        "DataFrame, a NumPy array, an Arrow Table or RecordBatch, or a list of dicts"
    )


def _array_frame(array: np.ndarray, signature: Signature | None) -> pd.DataFrame:
    if array.dtype.names:  # a structured array names its own columns
        return pd.DataFrame(array)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise InvalidInput(
            f"a {array.ndim}-D array is a tensor; this model takes columns, so pass a 2-D array"
        )
    if signature is None or signature.tensor_input is not None:
        names = [f"x{i}" for i in range(array.shape[1])]
    else:
        names = signature.input_names
        if len(names) != array.shape[1]:
            raise InvalidInput(
                f"the array has {array.shape[1]} columns but the model expects "
                f"{len(names)}: {names}"
            )
    return pd.DataFrame(array, columns=names)


def enforce(signature: Signature, data: pd.DataFrame) -> pd.DataFrame:
    """Check and cast a frame against the signature's inputs.

    Returns the signature's columns, in its order; extra columns are dropped.
    A frame whose columns already have the expected types comes back unchanged.

    Raises:
        InvalidInput: Naming the missing columns and the expected ones, or the
            column whose values cannot safely become the expected type, with
            both types.
    """
    expected = signature.input_names
    missing = [name for name in expected if name not in data.columns]
    if missing:
        raise InvalidInput(
            f"missing input columns {missing}; the model expects {expected}",
            missing=missing,
            expected=expected,
        )
    given = {name: data[name] for name in expected}
    columns = {spec.name: _cast(given[spec.name], spec) for spec in signature.inputs}
    if list(data.columns) == expected and all(columns[n] is given[n] for n in expected):
        return data
    return pd.DataFrame(columns, index=data.index)


def _kind(type_: str) -> str:
    if type_.startswith(("datetime64", "timedelta64")):
        return type_[: type_.index("[")]
    return type_.rstrip("0123456789")


def _cast(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    found = _type_of(series)
    target = spec.type
    if target == "object" or (found == target and series.dtype.kind != "O"):
        return series
    want, have = _kind(target), _kind(found)
    if found == target and want in ("string", "binary"):
        return series  # strings in an object column are fine as they are
    try:
        if want in ("int", "uint") and have in ("int", "uint", "bool", "float"):
            return _to_int(series, target, have)
        if want == "float" and have in ("int", "uint", "bool", "float"):
            return series.astype(target)
        if want == "bool" and have == "bool":
            if series.isna().any():
                raise ValueError("it has missing values")
            return series.astype(target)
        if want == "datetime64" and have == "datetime64":
            return series.astype(target)
        if want == "datetime64" and have == "string":
            return pd.to_datetime(series, format="ISO8601").astype(target)
        if want == "timedelta64" and have == "timedelta64":
            return series.astype(target)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _mistyped(spec, found, str(exc)) from None
    raise _mistyped(spec, found)


def _to_int(series: pd.Series, target: str, have: str) -> pd.Series:
    if series.isna().any():
        raise ValueError("it has missing values")
    if have == "float":
        values = series.to_numpy(dtype="float64")
        if not (np.isfinite(values).all() and (values == np.round(values)).all()):
            raise ValueError("it has fractional or infinite values")
    info = np.iinfo(np.dtype(target))
    if len(series) and have != "bool":
        low, high = int(series.min()), int(series.max())
        if low < info.min or high > info.max:
            raise ValueError(f"values fall outside {info.min}..{info.max}")
    return series.astype(target)


def _mistyped(spec: ColumnSpec, found: str, why: str = "") -> InvalidInput:
    reason = f" ({why})" if why else ""
    return InvalidInput(
        f"column {spec.name!r} should be {spec.type} but is {found}{reason}",
        column=spec.name,
        expected=spec.type,
        found=found,
    )


def enforce_tensor(spec: ColumnSpec, data: Any) -> np.ndarray:
    """Check an array against a tensor input: its rank, fixed axes and type kind.

    Raises:
        InvalidInput: When the rank or a fixed axis differs, or the values are
            of another kind (strings for numbers).
    """
    array = np.asarray(data)
    shape = spec.shape or ()
    if array.ndim != len(shape) or any(
        want not in (-1, got) for want, got in zip(shape, array.shape, strict=True)
    ):
        raise InvalidInput(
            f"input {spec.name!r} should have shape {shape} (-1: any) but has {array.shape}"
        )
    target = np.dtype(spec.type) if spec.type in _SIMPLE_TYPES - {"string", "binary"} else None
    if target is None or array.dtype == target:
        return array
    if not np.can_cast(array.dtype, target, casting="same_kind") and not (
        array.dtype.kind in "biu" and target.kind == "f"
    ):
        raise _mistyped(spec, array.dtype.name)
    return array.astype(target)


__all__ = [
    "ColumnSpec",
    "Signature",
    "enforce",
    "enforce_tensor",
    "infer_signature",
    "to_frame",
]
