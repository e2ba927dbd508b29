"""Batch inference: predict a table too large for memory, in parallel, resumably.

::

    from mlplane.serving.batch import ModelSource, predict_batch

    result = predict_batch(ModelSource.from_folder("model/"), "s3://bucket/day.parquet",
                           "preds.parquet", passthrough=["id"])

(``mlplane predict fraud@champion --input … --output …`` does the same with a model
from the registry, and a dataset version as input.)

How it runs. The input is split into parts (see :mod:`._batch_input`); an
:class:`~mlplane.compute.Executor` runs them on workers that load the model once
each; a worker streams its rows ``batch_rows`` at a time through the model and
writes each part's predictions to its own Parquet file in ``<output>.parts/``,
atomically. When every part is there, the parts are streamed into the output
file in input order (under a temporary name, renamed at the end) and the parts
folder is removed. Memory stays near ``workers x batch_rows`` rows whatever the
input's size.

Output columns: the ``passthrough`` columns, then ``prediction`` (a model that
returns several values per row: ``prediction_0``, ``prediction_1``, ..; one that
returns a DataFrame: its columns), then with ``proba`` one ``proba_<class>``
column per class from the model's ``predict_proba``. Probabilities are opt-in
because they are a second pass through the model.

Resuming. ``<output>.parts/manifest.json`` records the input's identity (each
file's path, size and modification stamp, or a dataset version's digest), the
model version's digest and the options that change results (``batch_rows``,
``passthrough``, ``proba``). Running the same job again after a crash redoes
only the parts whose files are missing; a job whose input, model or options
differ refuses to mix with the old parts unless ``restart`` discards them.
Executors and worker counts may change between runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mlplane.compute import Executor, default_workers, make_executor
from mlplane.errors import AlreadyExists, Conflict, InvalidInput
from mlplane.serving import _batch_input as inputs
from mlplane.serving import _batch_worker as worker
from mlplane.serving._batch_input import InputSource, input_from_files, open_input

MANIFEST = "manifest.json"
FORMAT = 1

Progress = Callable[[int, int | None], None]
"""Called with the rows done so far and the input's rows (None until known)."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """A model version's verified local folder, and what identifies it.

    Attributes:
        folder: The version folder (``mlplane-model.json``, ``model/``, ..), as the
            registry's ``fetch_model`` returns it.
        ref: How messages and the result name it (``fraud@3``).
        digest: The version's manifest digest; a resumed job must have the same.
    """

    folder: Path
    ref: str
    digest: str

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], *, ref: str | None = None) -> ModelSource:
        """A version folder or a bundle from ``mlplane models package`` (its files are
        verified against its manifest first); the digest is the files' manifest digest.

        Raises:
            InvalidInput: Not a version folder or bundle.
            TamperedArtifact: A bundle's file differs from its manifest.
        """
        from mlplane.registry import integrity
        from mlplane.serving.model_app import check_folder

        served = check_folder(Path(folder))
        manifest = served.manifest or {}
        digest = manifest.get("manifest_sha256") or integrity.manifest_digest(
            [f for f in integrity.list_files(served.folder) if not f.path.startswith(".")],
            str(served.meta["flavor"]),
            dict(served.meta.get("info") or {}),
        )
        name = ref or (
            f"{manifest['name']}@{manifest['version']}" if "name" in manifest else str(folder)
        )
        return cls(served.folder.resolve(), name, str(digest))


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What :func:`predict_batch` did."""

    output: str
    model: str
    rows: int
    """Rows in the output (all of the input's)."""
    parts: int
    parts_resumed: int
    """Parts found done from an earlier run, not predicted again."""
    columns: list[str]
    seconds: float
    executor: str
    workers: int
    rows_per_s: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows_per_s", self.rows / self.seconds if self.seconds else 0.0)


def predict_batch(
    model: ModelSource | str | os.PathLike[str],
    source: InputSource | str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    executor: str | Executor = "local",
    workers: int | None = None,
    address: str | None = None,
    batch_rows: int = 65_536,
    passthrough: Sequence[str] = (),
    proba: bool = False,
    overwrite: bool = False,
    restart: bool = False,
    progress: Progress | None = None,
) -> BatchResult:
    """Predict every row of ``source`` with ``model`` into the Parquet file ``output``.

    Args:
        model: A :class:`ModelSource`, or a version folder or bundle path.
        source: An :class:`InputSource` (see :func:`input_from_files` for a dataset
            version's files), or a Parquet, CSV or JSON Lines file or a folder of
            Parquet files, by local path or fsspec URL.
        output: A local path for the Parquet output.
        executor: ``local`` (processes here), ``ray``, or an :class:`Executor`.
        workers: Worker processes; default the CPUs (local) or the Ray cluster's.
        address: The Ray cluster for ``executor="ray"``; default a local Ray.
        batch_rows: Rows per model call and per part (memory grows with it).
        passthrough: Input columns copied into the output before the predictions.
        proba: Add ``proba_<class>`` columns from the model's ``predict_proba``.
        overwrite: Replace ``output`` if it exists (only once the new one is complete).
        restart: Discard the parts of an earlier run with other input, model or options.
        progress: Called as parts complete (see :data:`Progress`).

    Returns:
        What was written, how many rows and parts, and how fast.

    Raises:
        AlreadyExists: ``output`` exists and ``overwrite`` is not set.
        NotFound: The input does not exist.
        InvalidInput: The input lacks a column the model or ``passthrough`` needs (named),
            cannot be read, has no rows, or the model cannot predict on it.
        Conflict: ``<output>.parts/`` holds parts of a different job (pass ``restart``),
            or another job is writing there now.
    """
    t0 = time.perf_counter()
    if batch_rows < 1:
        raise InvalidInput(f"batch_rows must be at least 1, not {batch_rows}")
    if len(set(passthrough)) != len(passthrough):
        raise InvalidInput(f"passthrough names a column twice: {list(passthrough)}")
    out = Path(output).absolute()
    if out.is_dir():
        raise InvalidInput(f"output {out} is a folder; give a file name such as preds.parquet")
    if out.exists() and not overwrite:
        raise AlreadyExists(f"output {out} exists; pass --overwrite to replace it")
    runner = (
        executor
        if isinstance(executor, Executor)
        else make_executor(executor, workers, address=address)
    )
    src = _as_model(model)
    data = source if isinstance(source, InputSource) else open_input(source)
    the_plan = inputs.plan(data, batch_rows)
    meta = worker.read_meta(src.folder)
    options, read_columns = _options(src, meta, the_plan, list(passthrough), proba, batch_rows)
    _check_rows(the_plan)
    manifest = {
        "format": FORMAT,
        "input": _jsonable(data.identity),
        "model": {"ref": src.ref, "digest": src.digest},
        "options": {"batch_rows": batch_rows, "passthrough": list(passthrough), "proba": proba},
    }
    parts_dir = out.with_name(out.name + ".parts")
    with _claim(parts_dir, manifest, restart):
        done = _done_parts(parts_dir, the_plan)
        rows_done = sum(done.values())
        total = the_plan.rows
        if progress is not None:
            progress(rows_done, total)
        spec = worker.WorkerSpec(
            model=_model_payload(src, runner),
            options=options,
            read_columns=read_columns,
            parts_dir=str(parts_dir),
            threads=max(1, default_workers() // (runner.workers or 1))
            if runner.name == "local"
            else 1,
        )
        share = runner.workers or default_workers()
        work = inputs.tasks(the_plan, set(done), batch_rows, share, read_columns)
        results = runner.map(
            worker.run,
            work,
            setup=worker.setup,
            setup_args=(spec,),
            preload=(worker.__name__, *worker.preload_for(meta)),
        )
        for result in results:
            rows_done += result.rows
            if progress is not None:
                progress(rows_done, total)
        keys = _all_keys(the_plan)
        schema = _combine(parts_dir, keys, out)
        shutil.rmtree(parts_dir, ignore_errors=True)  # still holding its lock
    return BatchResult(
        output=str(out),
        model=src.ref,
        rows=rows_done,
        parts=len(keys),
        parts_resumed=len(done),
        columns=list(schema.names),
        seconds=time.perf_counter() - t0,
        executor=runner.name,
        workers=runner.workers or 0,
    )


def _as_model(model: ModelSource | str | os.PathLike[str]) -> ModelSource:
    return model if isinstance(model, ModelSource) else ModelSource.from_folder(model)


def _options(
    src: ModelSource,
    meta: Mapping[str, Any],
    the_plan: inputs.Plan,
    passthrough: list[str],
    proba: bool,
    batch_rows: int,
) -> tuple[worker.Options, tuple[str, ...] | None]:
    """What the model is fed and which columns to read; names every missing column."""
    sig = meta.get("signature") or {}
    specs = sig.get("inputs") or []
    tensor = len(specs) == 1 and specs[0].get("shape") is not None
    first = the_plan.files[0].schema.names
    fed: list[str] | None
    if tensor:  # one tensor: every column that is not passed through, in the file's order
        fed = [c for c in first if c not in passthrough]
    elif specs:
        fed = [str(c["name"]) for c in specs]
    else:
        fed = None  # no signature: the model gets every column
    for fp in the_plan.files:
        names = set(fp.schema.names)
        for what, wanted in (("the model", fed or []), ("--passthrough", passthrough)):
            missing = [c for c in wanted if c not in names]
            if missing:
                raise InvalidInput(
                    f"{fp.file.label} has no column {', '.join(repr(c) for c in missing)}, "
                    f"which {what} needs; its columns are {', '.join(fp.schema.names)}",
                    missing=missing,
                )
    read = None if fed is None else tuple(dict.fromkeys([*fed, *passthrough]))
    options = worker.Options(
        src.ref, None if fed is None else tuple(fed), tuple(passthrough), proba, batch_rows
    )
    return options, read


def _check_rows(the_plan: inputs.Plan) -> None:
    for fp in the_plan.files:
        if (fp.rows or 0) > 0 or (fp.head is not None and fp.head.num_rows > 0):
            return
    raise InvalidInput(f"the input {the_plan.files[0].file.label} has no rows to predict")


def _model_payload(src: ModelSource, runner: Executor) -> str | dict[str, bytes]:
    if runner.name == "local":
        return str(src.folder)
    # Workers on other machines cannot read this one's model cache: send them the files.
    return {
        p.relative_to(src.folder).as_posix(): p.read_bytes()
        for p in sorted(src.folder.rglob("*"))
        if p.is_file()
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


# -- the parts folder -------------------------------------------------------------------------


@contextlib.contextmanager
def _claim(parts_dir: Path, manifest: Mapping[str, Any], restart: bool) -> Iterator[None]:
    """Hold the parts folder for this job: locked against a second writer, emptied on
    ``restart``, refused when it holds another job's parts."""
    parts_dir.mkdir(parents=True, exist_ok=True)
    with open(parts_dir / ".lock", "a+b") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        except OSError:
            raise Conflict(
                f"another mlplane predict is writing {parts_dir.name[: -len('.parts')]} now "
                f"(it holds {parts_dir}/.lock); wait for it to finish"
            ) from None
        path = parts_dir / MANIFEST
        if restart:
            for entry in parts_dir.iterdir():
                if entry.name != ".lock":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        old = _read_manifest(path)
        parts = [p for p in parts_dir.glob("part-*.parquet")]
        if old is None and parts:
            raise Conflict(
                f"{parts_dir} holds {len(parts)} parts but no readable {MANIFEST}; "
                "pass --restart to discard them"
            )
        if old is not None and old != manifest:
            differ = [k for k in ("input", "model", "options") if old.get(k) != manifest.get(k)]
            what = ", ".join(differ) or "format"
            extra = ""
            if "model" in differ:
                before = (old.get("model") or {}).get("ref")
                extra = f" (they used {before}, now {manifest['model']['ref']})"
            raise Conflict(
                f"{parts_dir} holds {len(parts)} parts of a job with another {what}{extra}; "
                "pass --restart to discard them and start over, or rerun the original command"
            )
        if old is None:
            tmp = path.with_name(f".{MANIFEST}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
            os.replace(tmp, path)
        try:
            yield
        except BaseException:
            # A job that fails before its first part leaves nothing behind.
            if not any(parts_dir.glob("part-*.parquet")):
                shutil.rmtree(parts_dir, ignore_errors=True)
            raise


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _done_parts(parts_dir: Path, the_plan: inputs.Plan) -> dict[worker.Key, int]:
    """Parts written by an earlier run, with their rows; a part file that cannot be read
    or has other rows than planned is deleted (and so redone), as are temporary files."""
    for tmp in parts_dir.glob(".part-*.tmp-*"):
        tmp.unlink(missing_ok=True)
    planned = {p.key: p.stop - p.start for fp in the_plan.files for p in fp.parts or []}
    streamed = {fp.index for fp in the_plan.files if fp.parts is None}
    done: dict[worker.Key, int] = {}
    for path in parts_dir.glob("part-*.parquet"):
        try:
            _, f, n = path.stem.split("-")
            key = (int(f), int(n))
        except ValueError:
            continue
        rows = inputs.part_rows(path)
        want = planned.get(key)
        ok = rows is not None and (
            rows == want if want is not None else key[0] in streamed and rows > 0
        )
        if ok and rows is not None:
            done[key] = rows
        else:
            path.unlink(missing_ok=True)
    return done


def _all_keys(the_plan: inputs.Plan) -> list[worker.Key]:
    return [(fp.index, n) for fp in the_plan.files for n in range(the_plan.counts.get(fp.index, 0))]


def _combine(parts_dir: Path, keys: list[worker.Key], out: Path) -> pa.Schema:
    """Stream the parts, in input order, into ``out`` (written aside, renamed when whole);
    the output's schema, which every part is cast to (a column that is all nulls in one
    part, or int32 in one file and int64 in another, takes the wider type)."""
    paths = [parts_dir / worker.part_name(k) for k in keys]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise Conflict(
            f"{len(missing)} parts are missing from {parts_dir} ({', '.join(missing[:3])}); "
            "run the same command again to redo them"
        )
    schemas = [pq.read_schema(p) for p in paths]
    try:
        schema = pa.unify_schemas(
            list({str(s): s for s in schemas}.values()), promote_options="permissive"
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"the parts' columns do not agree: {exc}") from None
    schema = schema.remove_metadata()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for path in paths:
                part = pq.ParquetFile(path)
                for g in range(part.num_row_groups):
                    table = part.read_row_group(g)
                    writer.write_table(table if table.schema.equals(schema) else table.cast(schema))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return schema


__all__ = [
    "BatchResult",
    "InputSource",
    "ModelSource",
    "Progress",
    "input_from_files",
    "open_input",
    "predict_batch",
]
