"""What each batch-inference worker runs: load the model once, then predict parts into files.

A part is a run of input rows whose predictions land in one Parquet file in the
job's parts folder, written under a temporary name and renamed when complete, so
a part file that exists is whole. The parent (:mod:`mlplane.serving.batch`)
plans the parts; workers read their rows themselves from Parquet (``ReadTask``:
row groups and row ranges) or get them from the parent (``DataTask``: CSV, which
only one reader can split into rows).

This module is what a worker process imports: it keeps to the registry's
flavors and Arrow, not the server stack (``serving.model_app``, which loads the
same folders, imports the web framework).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlplane.errors import InvalidInput, MlplaneError

META_FILE = "mlplane-model.json"
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"

Key = tuple[int, int]
"""A part's key: (index of the input file, index of the part within it)."""


def part_name(key: Key) -> str:
    return f"part-{key[0]:05d}-{key[1]:06d}.parquet"


@dataclass(frozen=True, slots=True)
class Options:
    """What every part of one job shares; also what the parent's probe uses."""

    ref: str
    inputs: tuple[str, ...] | None
    """The columns the model gets, in order; None: every column read."""
    passthrough: tuple[str, ...]
    proba: bool
    batch_rows: int


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    model: str | Mapping[str, bytes]
    """The verified version folder, or its files by relative path (for workers on
    other machines, which cannot see this one's model cache)."""
    options: Options
    read_columns: tuple[str, ...] | None
    parts_dir: str
    threads: int


@dataclass(frozen=True, slots=True)
class PartRange:
    key: Key
    start: int
    stop: int
    """Rows ``[start, stop)`` of the task's row groups, taken together."""


@dataclass(frozen=True, slots=True)
class ReadTask:
    """Predict parts that the worker reads from a Parquet file."""

    url: str
    label: str
    row_groups: tuple[int, ...]
    parts: tuple[PartRange, ...]
    options: Mapping[str, Any] | None = None
    """fsspec storage options for ``url`` (credentials, endpoint)."""


@dataclass(frozen=True, slots=True)
class DataTask:
    """Predict one part whose rows the parent read."""

    label: str
    key: Key
    table: pa.Table


@dataclass(frozen=True, slots=True)
class TaskDone:
    keys: tuple[Key, ...]
    rows: int
    seconds: float


# -- loading ----------------------------------------------------------------------------------


def load_folder(folder: Path) -> Any:
    """The version folder's model as a ``PyFuncModel`` (as ``serving.model_app`` loads it)."""
    from mlplane.registry.flavors import load_model
    from mlplane.registry.signature import Signature

    meta = read_meta(folder)
    sig = Signature.from_dict(meta["signature"]) if meta.get("signature") else None
    return load_model(folder / "model", dict(meta.get("info") or {}), sig)


def read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META_FILE).read_text())
        str(meta["flavor"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InvalidInput(
            f"{folder} is not a model version folder: no readable {META_FILE}"
        ) from None
    return dict(meta)


# What each flavor imports to load a model. skops alone takes seconds to import (it lists
# every scikit-learn estimator), so a pool that can imports these once for all workers.
_FLAVOR_MODULES = {
    "sklearn": ("skops.io",),
    "xgboost": ("xgboost",),
    "lightgbm": ("lightgbm",),
    "torch": ("torch",),
    "onnx": ("onnxruntime",),
}


def preload_for(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """The modules worth importing before a worker loads this version's model."""
    return ("mlplane.registry.flavors", *_FLAVOR_MODULES.get(str(meta.get("flavor")), ()))


_state: dict[str, Any] = {}


def setup(spec: WorkerSpec) -> None:
    """Load the model once in this worker, and keep its native libraries to their share
    of the cores (the workers are already one per core)."""
    from threadpoolctl import threadpool_limits

    pa.set_cpu_count(spec.threads)
    if isinstance(spec.model, str):
        folder = Path(spec.model)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="mlplane-model-")
        _state["tmp"] = tmp  # lives as long as the worker
        folder = Path(tmp.name)
        for rel, data in spec.model.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    _state["model"] = load_folder(folder)
    # After loading: the limits reach the native libraries loaded by then (OpenMP, BLAS).
    _state["limits"] = threadpool_limits(limits=spec.threads)
    _state["spec"] = spec


def run(task: ReadTask | DataTask) -> TaskDone:
    """Predict the task's parts and write each one's file; what was done."""
    spec: WorkerSpec = _state["spec"]
    t0 = time.perf_counter()
    if isinstance(task, DataTask):
        with _PartWriter(spec, task.key) as writer:
            for batch in task.table.to_batches(max_chunksize=spec.options.batch_rows):
                writer.write(_predict(batch, spec, task.label))
        return TaskDone((task.key,), task.table.num_rows, time.perf_counter() - t0)
    rows = _run_read(task, spec)
    return TaskDone(tuple(p.key for p in task.parts), rows, time.perf_counter() - t0)


def _run_read(task: ReadTask, spec: WorkerSpec) -> int:
    """Walk the row groups' batches, giving each part its rows; rows outside every part
    (parts done before a crash, or another task's) are read but not predicted."""
    parts = iter(task.parts)
    part = next(parts, None)
    writer: _PartWriter | None = None
    pos = rows = 0
    try:
        for batch in _batches(task, spec):
            begin, end = pos, pos + batch.num_rows
            pos = end
            while part is not None and part.start < end:
                lo, hi = max(part.start, begin), min(part.stop, end)
                if lo < hi:
                    writer = writer or _PartWriter(spec, part.key)
                    writer.write(_predict(batch.slice(lo - begin, hi - lo), spec, task.label))
                    rows += hi - lo
                if part.stop > end:
                    break  # the part goes on in the next batch
                if writer is not None:
                    writer.commit()
                writer, part = None, next(parts, None)
            if part is None:
                break
    finally:
        if writer is not None:
            writer.abort()
    if part is not None:
        raise InvalidInput(
            f"{task.label} ended at row {pos} of row groups {list(task.row_groups)}, before "
            f"row {part.stop}: the file changed while it was read"
        )
    return rows


def _batches(task: ReadTask, spec: WorkerSpec) -> Iterator[pa.RecordBatch]:
    try:
        pf = open_parquet(task.url, task.options)
        yield from pf.iter_batches(
            batch_size=spec.options.batch_rows,
            row_groups=list(task.row_groups),
            columns=list(spec.read_columns) if spec.read_columns is not None else None,
            use_threads=spec.threads > 1,
        )
    except (OSError, pa.ArrowException) as exc:
        groups = ", ".join(str(g) for g in task.row_groups)
        raise InvalidInput(f"cannot read {task.label} (row groups {groups}): {exc}") from None


def open_parquet(url: str, options: Mapping[str, Any] | None = None) -> pq.ParquetFile:
    """A Parquet file by local path or fsspec URL (with its storage ``options``); local
    files are read without buffering whole column chunks, so memory follows the batch
    size rather than the row group's."""
    if "://" in url and not url.startswith("file://"):
        import fsspec

        fs, path = fsspec.core.url_to_fs(url, **(options or {}))
        return pq.ParquetFile(path, filesystem=fs)
    return pq.ParquetFile(url.removeprefix("file://"), pre_buffer=False, buffer_size=1 << 20)


class _PartWriter:
    """One part's file: written under a temporary name, renamed into place on commit."""

    def __init__(self, spec: WorkerSpec, key: Key) -> None:
        self.final = Path(spec.parts_dir) / part_name(key)
        self.tmp = self.final.with_name(f".{self.final.name}.tmp-{os.getpid()}")
        self.writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
        elif not table.schema.equals(self.writer.schema):
            table = _cast(table, self.writer.schema)
        self.writer.write_table(table)

    def commit(self) -> None:
        if self.writer is None:
            raise InvalidInput(f"{self.final.name} has no rows")  # parts are never empty
        self.writer.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> _PartWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _cast(table: pa.Table, schema: pa.Schema) -> pa.Table:
    try:
        return table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise InvalidInput(
            f"the predictions or passthrough columns change type between rows ({exc}); "
            f"got {table.schema}, had {schema}"
        ) from None


# -- predicting -------------------------------------------------------------------------------


def _predict(batch: pa.RecordBatch, spec: WorkerSpec, label: str) -> pa.Table:
    return predict_rows(_state["model"], batch, spec.options, label)


def predict_rows(model: Any, batch: pa.RecordBatch, options: Options, label: str) -> pa.Table:
    """The passthrough columns of ``batch`` followed by the model's prediction columns:
    ``prediction`` (or ``prediction_0``, .. for 2-D output, or the columns of a frame the
    model returns) and, with ``options.proba``, ``proba_<class>`` per class."""
    fed = batch.select(list(options.inputs)) if options.inputs is not None else batch
    frame = fed.to_pandas()
    try:
        out = model.predict(frame)
        columns = _columns(out)
        if options.proba:
            columns.update(_proba(model, frame, options.ref))
    except MlplaneError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        # Without a signature the model itself is the first to see bad input.
        raise InvalidInput(f"{label}: the model could not predict: {exc}"[:1000]) from None
    arrays: dict[str, pa.Array] = {name: batch.column(name) for name in options.passthrough}
    for name, values in columns.items():
        if len(values) != batch.num_rows:
            raise InvalidInput(
                f"{options.ref} returned {len(values)} predictions for {batch.num_rows} rows"
            )
        if name in arrays:
            raise InvalidInput(
                f"the prediction column {name!r} has the name of a passthrough column: "
                "rename that column or leave it out of --passthrough"
            )
        arrays[name] = values
    return pa.Table.from_pydict(arrays)


def _columns(out: Any) -> dict[str, pa.Array]:
    if isinstance(out, pd.DataFrame):
        table = pa.Table.from_pandas(out, preserve_index=False)
        return {
            str(name): table.column(i).combine_chunks() for i, name in enumerate(table.column_names)
        }
    values = np.asarray(out)
    if values.ndim == 1:
        return {PREDICTION: pa.array(values)}
    if values.ndim == 2:
        return {f"{PREDICTION}_{i}": pa.array(values[:, i]) for i in range(values.shape[1])}
    raise InvalidInput(
        f"the model returned a {values.ndim}-D array; batch prediction writes columns, "
        "so it takes models that return one value or one row of values per input row"
    )


def _proba(model: Any, frame: pd.DataFrame, ref: str) -> dict[str, pa.Array]:
    from mlplane.registry.signature import enforce

    native = model.model
    if not callable(getattr(native, "predict_proba", None)):
        raise InvalidInput(f"{ref} has no predict_proba: leave out --proba")
    data: Any = enforce(model.signature, frame) if model.signature is not None else frame
    if model.flavor.name == "sklearn" and not hasattr(native, "feature_names_in_"):
        data = data.to_numpy()  # as the sklearn flavor predicts: no names it was not fitted on
    proba = np.asarray(native.predict_proba(data))
    if proba.ndim != 2:
        raise InvalidInput(f"{ref}: predict_proba returned a {proba.ndim}-D array, not 2-D")
    classes = list(getattr(native, "classes_", range(proba.shape[1])))
    if len(classes) != proba.shape[1]:
        classes = list(range(proba.shape[1]))
    return {f"{PROBA_PREFIX}{c}": pa.array(proba[:, i]) for i, c in enumerate(classes)}
