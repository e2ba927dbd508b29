"""The wire formats: MLflow's and our JSON bodies, and the Open Inference Protocol (v2).

MLflow's scoring bodies (``POST /invocations``, like ``mlflow models serve``) and our plain
predict take one of::

    {"dataframe_split": {"columns": [...], "data": [[...]]}}   pandas' split orient
    {"dataframe_records": [{"col": v, ...}, ...]}               records
    {"instances": [{"col": v}, ...] | [[...], ...]}             records or rows
    {"inputs": {"col": [...], ...} | [[...], ...]}              columns or rows

The Open Inference Protocol's infer body is ``{"id"?, "parameters"?, "inputs": [{"name",
"shape", "datatype", "data"}], "outputs"?}``: one input per signature column (shape
``[n]`` or ``[n, 1]``) or one 2-D input ``[n, k]`` with the columns in signature order.
Triton's binary tensor extension is understood both ways (what ``tritonclient`` sends by
default): with an ``Inference-Header-Content-Length`` header the JSON is followed by the
raw tensors, each input naming its ``binary_data_size``; an output is answered in binary
when it asks for ``binary_data`` or the request for ``binary_data_output``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd

from mlplane.errors import InvalidInput
from mlplane.serving.inference.predictors import FRAME, ROWS, Predictor, type_kind
from mlplane.serving.inference.readers import Reader

FORMS = ("dataframe_split", "dataframe_records", "instances", "inputs")
DATATYPES: dict[str, str | None] = {
    "BOOL": "|b1",
    **{f"INT{b}": f"<i{b // 8}" for b in (8, 16, 32, 64)},
    **{f"UINT{b}": f"<u{b // 8}" for b in (8, 16, 32, 64)},
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BYTES": None,
}
"""OIP datatypes and their little-endian NumPy dtypes (BYTES: length-prefixed strings)."""
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def datatype(type_: str) -> str:
    """The OIP datatype of a signature type (strings, dates, objects: BYTES)."""
    kind, bits = type_kind(type_), type_[len(type_kind(type_)) :]
    if kind == "bool":
        return "BOOL"
    if kind in ("int", "uint") and bits.isdigit():
        return f"{kind.upper()}{bits}"
    if kind == "float" and bits.isdigit():
        return f"FP{bits}"
    return "BYTES"


def dtype_datatype(dtype: np.dtype[Any]) -> str:
    if dtype.kind == "b":
        return "BOOL"
    if dtype.kind in "iu":
        return f"{'UINT' if dtype.kind == 'u' else 'INT'}{dtype.itemsize * 8}"
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return f"FP{dtype.itemsize * 8}"
    return "BYTES"


def loads(raw: bytes | memoryview) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(type(obj).__name__)


def dumps(content: Any) -> bytes:
    # NaN and infinities become null; numeric arrays are written without a Python list.
    return orjson.dumps(content, default=_default, option=_JSON_OPTS)


def jsonable(out: Any) -> Any:
    """One request's output as MLflow answers it: a list, or records for a DataFrame."""
    if isinstance(out, pd.DataFrame):
        return out.to_dict(orient="records")
    if isinstance(out, np.ndarray) and (out.dtype.kind not in "biuf" or not out.flags.c_contiguous):
        return out.tolist()
    return out


# -- MLflow's and our JSON bodies ----------------------------------------------------------------


def read_predict(reader: Reader, body: Any) -> tuple[Any, int]:
    """The predictor data of a body in one of :data:`FORMS`."""
    forms = [k for k in FORMS if k in body] if isinstance(body, dict) else []
    if len(forms) != 1:
        raise InvalidInput(
            "the body must be a JSON object with exactly one of 'dataframe_split' ({columns, "
            "data}), 'dataframe_records' (a list of records), 'instances' (records or rows) "
            "or 'inputs' (columns or rows)"
        )
    form = forms[0]
    value = body[form]
    if form == "dataframe_split":
        return reader.split(value, form)
    if form == "dataframe_records":
        return reader.records(value, form)
    if isinstance(value, dict):
        return reader.columns(value, form)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return reader.records(value, form)
    return reader.rows(value, form)


# -- the Open Inference Protocol -----------------------------------------------------------------


@dataclass(slots=True)
class Tensor:
    name: str
    shape: list[int]
    datatype: str
    values: np.ndarray
    """Flat, row-major."""


@dataclass(slots=True)
class InferRequest:
    id: str | None
    inputs: list[Tensor]
    outputs: list[tuple[str, bool]] | None
    """Requested outputs and whether each is wanted in binary; None: all."""
    binary: bool
    """``binary_data_output``: every output in binary unless it says otherwise."""


def read_infer(raw: bytes, header_length: bytes | None) -> InferRequest:
    """Parse an infer body (JSON, or JSON then binary tensors)."""
    blob = b""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if not 0 <= n <= len(raw):
            raise InvalidInput("Inference-Header-Content-Length must be within the body's length")
        raw, blob = raw[:n], raw[n:]
    body = loads(raw)
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or not body["inputs"]:
        raise InvalidInput("the body must be a JSON object with a non-empty list 'inputs'")
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("'parameters' must be an object")
    offset, tensors = 0, []
    for i, t in enumerate(body["inputs"]):
        tensor, offset = _input(t, i, blob, offset)
        tensors.append(tensor)
    if offset != len(blob):
        raise InvalidInput(f"the body has {len(blob) - offset} bytes past the inputs' binary data")
    outputs = None
    if body.get("outputs") is not None:
        if not isinstance(body["outputs"], list):
            raise InvalidInput("'outputs' must be a list of {name, parameters?}")
        outputs = []
        for i, o in enumerate(body["outputs"]):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InvalidInput(f"'outputs[{i}].name' must be a string")
            p = o.get("parameters") or {}
            outputs.append(
                (o["name"], bool(p.get("binary_data")) if isinstance(p, dict) else False)
            )
    rid = body.get("id")
    return InferRequest(
        id=str(rid) if rid is not None else None,
        inputs=tensors,
        outputs=outputs,
        binary=bool(params.get("binary_data_output")),
    )


def _input(t: Any, i: int, blob: bytes, offset: int) -> tuple[Tensor, int]:
    where = f"inputs[{i}]"
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise InvalidInput(f"'{where}.name' must be a string")
    name, shape, dt = t["name"], t.get("shape"), t.get("datatype")
    where = f"input {name!r}"
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(f"{where}: 'shape' must be a list of sizes >= 0", column=name)
    if dt not in DATATYPES:
        raise InvalidInput(
            f"{where}: datatype {dt!r} is not one of {', '.join(DATATYPES)}", column=name
        )
    count = 1
    for d in shape:
        count *= d
    params = t.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(blob):
            raise InvalidInput(f"{where}: binary_data_size {size!r} runs past the body")
        values = _from_binary(blob[offset : offset + size], dt, where, name)
        offset += size
    else:
        if "data" not in t:
            raise InvalidInput(f"{where} has no 'data'", column=name)
        values = _from_json(t["data"], dt, where, name)
    if values.size != count:
        raise InvalidInput(
            f"{where} has shape {shape} ({count} values) but {values.size} values", column=name
        )
    return Tensor(name, shape, dt, values), offset


def _from_json(data: Any, dt: str, where: str, name: str) -> np.ndarray:
    try:
        a = np.array(data, dtype=object if dt == "BYTES" else None)
    except (ValueError, TypeError):
        raise InvalidInput(f"{where}: 'data' is not a regular (nested) list", column=name) from None
    a = a.ravel()
    if dt == "BYTES":
        if not all(isinstance(v, str) for v in a):
            raise InvalidInput(f"{where} is BYTES: its data must be strings", column=name)
        return a
    ok = {"BOOL": "b", "FP16": "biuf", "FP32": "biuf", "FP64": "biuf"}.get(dt, "iu")
    if a.size and a.dtype.kind not in ok:
        raise InvalidInput(f"{where} is {dt} but its data holds {_found(a)}", column=name)
    return a


def _found(a: np.ndarray) -> str:
    if a.dtype.kind in "USO":
        return (
            f"non-numbers such as {next(v for v in a.tolist() if not isinstance(v, int | float))!r}"
        )
    return {"f": "fractional numbers", "b": "booleans"}.get(a.dtype.kind, f"{a.dtype} values")


def _from_binary(raw: bytes, dt: str, where: str, name: str) -> np.ndarray:
    np_dtype = DATATYPES[dt]
    if np_dtype is None:  # BYTES: each element a 4-byte little-endian length, then the bytes
        out, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise InvalidInput(f"{where}: truncated BYTES element", column=name)
            (n,) = struct.unpack_from("<I", raw, pos)
            if pos + 4 + n > len(raw):
                raise InvalidInput(f"{where}: truncated BYTES element", column=name)
            out.append(raw[pos + 4 : pos + 4 + n].decode("utf-8", "replace"))
            pos += 4 + n
        return np.array(out, dtype=object)
    itemsize = np.dtype(np_dtype).itemsize
    if len(raw) % itemsize:
        raise InvalidInput(f"{where}: {len(raw)} bytes is not a whole number of {dt}", column=name)
    return np.frombuffer(raw, dtype=np_dtype)


def infer_data(reader: Reader, req: InferRequest) -> tuple[Any, int]:
    """The predictor data of an infer request, for one version."""
    pred, names = reader.predictor, reader.names
    tensors = req.inputs
    if not names and pred.tensor is None:  # no signature: the inputs are the frame
        t = tensors[0]
        if len(tensors) == 1 and len(t.shape) == 2:
            matrix = t.values.reshape(t.shape)
            frame = pd.DataFrame(matrix, columns=[f"x{j}" for j in range(t.shape[1])])
        else:
            frame = pd.DataFrame({t.name: t.values for t in tensors})
        return reader.frame(frame, "inputs")
    if pred.tensor is not None or (
        len(tensors) == 1
        and len(tensors[0].shape) == 2
        and (reader.k > 1 or tensors[0].name not in names)
    ):
        t = tensors[0]
        if len(tensors) != 1:
            raise InvalidInput(f"this model takes one input tensor, not {len(tensors)}")
        if pred.tensor is not None:
            return reader.tensor(t.values.reshape(t.shape), f"input {t.name!r}")
        if t.shape[1] != reader.k:
            raise InvalidInput(
                f"input {t.name!r} has shape {t.shape}: a 2-D input must be [rows, {reader.k}] "
                f"with the columns {names}",
                column=t.name,
            )
        _compatible(reader, t, range(reader.k))
        matrix = t.values.reshape(t.shape)
        if pred.kind == FRAME:
            return reader.frame(pd.DataFrame(matrix, columns=names), f"input {t.name!r}")
        return reader._floats(matrix.astype(np.float64), f"input {t.name!r}")
    by_name = {t.name: t for t in tensors}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise InvalidInput(
            f"missing inputs {missing}; the model's inputs are {names} (one [rows] input per "
            f"column), or one [rows, {reader.k}] input",
            column=missing[0],
        )
    extra = [t.name for t in tensors if t.name not in reader._index]
    if extra:
        raise InvalidInput(f"unexpected inputs {extra}; the model's inputs are {names}")
    rows = {t.shape[0] if t.shape else -1 for t in tensors}
    for t in tensors:
        if len(t.shape) not in (1, 2) or (len(t.shape) == 2 and t.shape[1] != 1):
            raise InvalidInput(
                f"input {t.name!r} has shape {t.shape}; a column's shape is [rows] or [rows, 1]",
                column=t.name,
            )
    if len(rows) != 1:
        raise InvalidInput("the inputs have different numbers of rows")
    for j, n in enumerate(names):
        _compatible(reader, by_name[n], [j])
    if pred.kind == FRAME:
        frame = pd.DataFrame({n: by_name[n].values for n in names})
        return reader.frame(frame, "inputs")
    matrix = np.column_stack([by_name[n].values.astype(np.float64) for n in names])
    return reader._floats(matrix, "inputs")


def _compatible(reader: Reader, t: Tensor, columns: Any) -> None:
    """A tensor's datatype against the columns it fills (``columns``: their indices)."""
    if t.datatype == "BYTES" and reader.kind == ROWS:
        spec = reader.predictor.specs[columns[0]]
    elif t.datatype.startswith("FP") and reader.int_columns:
        spec = next((reader.predictor.specs[j] for j in columns if j in reader.int_columns), None)
        if spec is None:
            return
    else:
        return
    raise InvalidInput(
        f"input {t.name!r} is {t.datatype} but column {spec.name!r} is {spec.type} "
        f"(send {datatype(spec.type)})",
        column=spec.name,
    )


def output_names(pred: Predictor) -> list[str]:
    outs = pred.model.signature.outputs if pred.model.signature is not None else None
    return [c.name for c in outs] if outs else ["output-0"]


def output_tensors(out: Any, names: list[str]) -> list[tuple[str, np.ndarray]]:
    """One request's output as named tensors (metadata's outputs say the same names)."""
    if isinstance(out, pd.DataFrame):
        return [(str(c), out[c].to_numpy()) for c in out.columns]
    a = np.asarray(out)
    if a.ndim == 2 and a.shape[1] == len(names) > 1:
        return [(n, np.ascontiguousarray(a[:, j])) for j, n in enumerate(names)]
    return [(names[0], a)]


def encode_infer(
    req: InferRequest, model_name: str, version: int, out: Any, names: list[str], rid: str
) -> tuple[bytes, int | None]:
    """The infer answer, and the JSON header's length when binary tensors follow it."""
    tensors = output_tensors(out, names)
    wanted = dict(req.outputs) if req.outputs is not None else None
    blobs: list[bytes] = []
    outputs = []
    for name, a in tensors:
        if wanted is not None and name not in wanted:
            continue
        dt = dtype_datatype(a.dtype)
        entry: dict[str, Any] = {"name": name, "shape": list(a.shape), "datatype": dt}
        if wanted.get(name, req.binary) if wanted is not None else req.binary:
            raw = _to_binary(a, dt)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = a.ravel() if dt != "BYTES" else [_text(v) for v in a.ravel()]
        outputs.append(entry)
    answer = {
        "model_name": model_name,
        "model_version": str(version),
        "id": req.id or rid,
        "outputs": outputs,
    }
    head = dumps(answer)
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def check_outputs(req: InferRequest, names: list[str]) -> None:
    if req.outputs is not None:
        unknown = [n for n, _ in req.outputs if n not in names]
        if unknown:
            raise InvalidInput(f"unknown outputs {unknown}; the model's outputs are {names}")


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _to_binary(a: np.ndarray, dt: str) -> bytes:
    np_dtype = DATATYPES[dt]
    if np_dtype is None:
        parts = []
        for v in a.ravel():
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(struct.pack("<I", len(b)) + b)
        return b"".join(parts)
    return np.ascontiguousarray(a, dtype=np_dtype).tobytes()
