"""Request data into one version's predictor data, checked against its signature.

A :class:`Reader` takes the shapes every protocol has in common (positional rows,
records, columns, a split frame) and makes what its version's
:class:`~mlplane.serving.inference.predictors.Predictor` predicts: a float64 array in
signature column order (``rows``), an array of the tensor's shape (``tensor``) or an
enforced DataFrame (``frame``). A wrong payload raises
:class:`~mlplane.errors.InvalidInput` naming the column or field, before the request joins
a batch. Strings never become numbers and fractional numbers never become integers, as in
:func:`~mlplane.registry.signature.enforce`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlplane.errors import InvalidInput
from mlplane.registry.signature import enforce_tensor
from mlplane.serving.inference.predictors import FRAME, ROWS, TENSOR, Predictor, type_kind

_NUMBER = (int, float, bool)  # True is 1.0, as enforce casts it
_NONE = object()


class Reader:
    """Builds one version's predictor data; see the module docstring."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.kind = predictor.kind
        self.names = predictor.names
        self.k = len(self.names)
        self._index = {n: i for i, n in enumerate(self.names)}
        self._ints = [
            (j, c.name, c.type, np.iinfo(np.dtype(c.type)))
            for j, c in enumerate(predictor.specs)
            if type_kind(c.type) in ("int", "uint")
        ]
        self.int_columns = frozenset(j for j, *_ in self._ints)

    # -- the shared shapes -----------------------------------------------------------------

    def rows(self, data: Any, where: str) -> tuple[Any, int]:
        """Positional rows (lists in signature column order), or a tensor's nested lists."""
        if not isinstance(data, list) or not data:
            raise InvalidInput(f"'{where}' must be a non-empty list of rows")
        if self.kind == TENSOR:
            return self.tensor(data, where)
        if self.kind == FRAME:
            if self.k == 1 and not isinstance(data[0], list):
                data = [[v] for v in data]
            self._widths(data, self.k, where)
            return self._frame(pd.DataFrame(data, columns=self.names), where)
        if self.k == 1 and not isinstance(data[0], list):
            data = [[v] for v in data]
        return self._floats(self._matrix(data, self.k, where), where)

    def records(self, records: Any, where: str) -> tuple[Any, int]:
        """A list of objects, column -> value; extra keys are ignored."""
        if not isinstance(records, list) or not records:
            raise InvalidInput(f"'{where}' must be a non-empty list of records")
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise InvalidInput(f"'{where}[{i}]' is not an object of column -> value")
        if self.kind == FRAME:
            return self._frame(pd.DataFrame(records), where)
        if self.kind == TENSOR:
            raise InvalidInput(f"this model takes one tensor, not records: send '{where}' rows")
        names = self.names
        try:
            rows = [[r[c] for c in names] for r in records]
        except KeyError:
            i, r = next((i, r) for i, r in enumerate(records) if any(c not in r for c in names))
            raise self._missing([c for c in names if c not in r], f"{where}[{i}]") from None
        return self._floats(self._matrix(rows, self.k, where), where)

    def columns(self, columns: Any, where: str) -> tuple[Any, int]:
        """An object of column -> list of values (or -> one value, for one row)."""
        if not isinstance(columns, dict) or not columns:
            raise InvalidInput(f"'{where}' must be a non-empty object of column -> values")
        if self.kind == TENSOR:
            if len(columns) != 1:
                raise InvalidInput(f"this model takes one tensor; '{where}' has {len(columns)}")
            return self.tensor(next(iter(columns.values())), where)
        scalars = all(not isinstance(v, list) for v in columns.values())
        if self.kind == FRAME:
            try:
                frame = pd.DataFrame([columns] if scalars else columns)
            except ValueError as exc:
                raise InvalidInput(f"'{where}' is not a table of columns: {exc}") from None
            return self._frame(frame, where)
        missing = [c for c in self.names if c not in columns]
        if missing:
            raise self._missing(missing, where)
        lists = [columns[c] for c in self.names]
        if scalars:
            return self._floats(self._matrix([lists], self.k, where), where)
        lengths = {len(v) if isinstance(v, list) else -1 for v in lists}
        if len(lengths) != 1 or -1 in lengths:
            raise InvalidInput(f"the columns of '{where}' must be lists of one length")
        return self._floats(self._matrix(list(zip(*lists, strict=True)), self.k, where), where)

    def split(self, value: Any, where: str) -> tuple[Any, int]:
        """``{"columns": [...], "data": [[...]], "index"?: [...]}`` (pandas' split orient)."""
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise InvalidInput(f"'{where}' must be an object with 'columns' and 'data'")
        columns, data = value.get("columns"), value["data"]
        if columns is None or columns == self.names:
            return self.rows(data, f"{where}.data")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise InvalidInput(f"'{where}.columns' must be a list of column names")
        if not data:
            raise InvalidInput(f"'{where}.data' must be a non-empty list of rows")
        if self.kind != ROWS:
            self._widths(data, len(columns), f"{where}.data")
            frame = pd.DataFrame(data, columns=columns)
            if self.kind == TENSOR:
                return self.tensor(frame.to_numpy().tolist(), where)
            return self._frame(frame, where)
        missing = [c for c in self.names if c not in columns]
        if missing:
            raise self._missing(missing, where)
        matrix = self._matrix(data, len(columns), f"{where}.data")
        taken = matrix[:, [columns.index(c) for c in self.names]]
        return self._floats(taken, where)

    def tensor(self, data: Any, where: str) -> tuple[Any, int]:
        spec = self.predictor.tensor
        assert spec is not None
        try:
            array = np.asarray(data)
        except ValueError as exc:
            raise InvalidInput(f"'{where}' is not a regular nested list: {exc}") from None
        if array.dtype.kind in "OUS" and type_kind(spec.type) not in ("string", "binary"):
            raise InvalidInput(f"'{where}' should hold numbers ({spec.type})", column=spec.name)
        array = enforce_tensor(spec, array)
        return array, int(array.shape[0]) if array.ndim else 1

    def frame(self, frame: pd.DataFrame, where: str) -> tuple[Any, int]:
        """A DataFrame made by a protocol (OIP columns) for a ``frame`` predictor."""
        return self._frame(frame, where)

    # -- checks ------------------------------------------------------------------------------

    def _missing(self, missing: list[str], where: str) -> InvalidInput:
        return InvalidInput(
            f"'{where}' is missing input columns {missing}; the model expects {self.names}",
            column=missing[0],
            missing=missing,
        )

    def _widths(self, data: list[Any], width: int, where: str) -> None:
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != width:
                raise InvalidInput(
                    f"'{where}[{i}]' must be a list of {width} values ({self._cols(width)})"
                )

    def _cols(self, width: int) -> str:
        return ", ".join(self.names) if width == self.k else f"{width} columns"

    def _matrix(self, data: Any, width: int, where: str) -> np.ndarray:
        """``data`` as a 2-D array ``(n, width)``; numeric when it can be, else objects."""
        try:
            a = np.array(data)
            if a.dtype.kind not in "biufO":
                a = np.array(data, dtype=object)  # strings: find the column by value
        except (ValueError, TypeError):
            a = None
        if a is None or a.ndim != 2 or a.shape[1] != width:
            if isinstance(data, list):
                self._widths(data, width, where)
            raise InvalidInput(f"'{where}' must be rows of {width} values ({self._cols(width)})")
        if a.shape[0] == 0:
            raise InvalidInput(f"'{where}' has no rows")
        return a

    def _floats(self, a: np.ndarray, where: str) -> tuple[np.ndarray, int]:
        if a.dtype.kind in "biuf":
            out = a.astype(np.float64, copy=False)
        else:
            for j, spec in enumerate(self.predictor.specs):
                bad = next((v for v in a[:, j] if v is not None and type(v) not in _NUMBER), _NONE)
                if bad is not _NONE:
                    raise InvalidInput(
                        f"column {spec.name!r} should be {spec.type} but holds {bad!r}",
                        column=spec.name,
                    )
            out = a.astype(np.float64)  # None is a missing value: NaN
        for j, name, type_, info in self._ints:
            col = out[:, j]
            why = ""
            if np.isnan(col).any():
                why = "it has missing values"
            elif not (col == np.floor(col)).all():
                why = "it has fractional or infinite values"
            elif col.min() < info.min or col.max() > info.max:
                why = f"values fall outside {info.min}..{info.max}"
            if why:
                raise InvalidInput(f"column {name!r} should be {type_} ({why})", column=name)
        return out, int(out.shape[0])

    def _frame(self, frame: pd.DataFrame, where: str) -> tuple[pd.DataFrame, int]:
        if not len(frame):
            raise InvalidInput(f"'{where}' has no rows")
        return self.predictor.prepare_frame(frame), len(frame)


def body_object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body
