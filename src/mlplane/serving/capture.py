"""Payload capture: a sampled share of requests and their answers, kept as Parquet.

The inference server builds a :class:`CaptureRecord` for each sampled request and hands
it to :meth:`CaptureWriter.submit`, which never blocks: a bounded queue takes it, or it is
dropped and counted. A background thread groups records by deployment and UTC hour and,
every ``flush_s`` seconds or ``max_rows`` rows, masks the sensitive fields, writes one
Parquet file per group, stores it as encrypted chunks (compressed and encrypted like
everything at rest) and indexes it under its hour with
:meth:`~mlplane.serving.service.DeploymentService.record_capture`. Nothing it does can
fail a request: its errors are logged and counted.

Sensitive fields are the record's own (``CaptureRecord.sensitive``), the deployment's
(``DeploymentConfig.sensitive``) and the columns the version's signature marks sensitive.
They are looked up again whenever the deployment's generation changes; when they cannot
be looked up (the deployment or version is gone), the records are dropped, never written
unmasked.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlplane import projects
from mlplane.blobs.chunks import AVG_CHUNK, ChunkRef
from mlplane.errors import NotFound
from mlplane.security import Principal

log = logging.getLogger("mlplane.serving.capture")

MASK = "[masked]"
"""What a sensitive value becomes in a captured file."""
SERVE_PRINCIPAL = Principal("mlplane-serve", is_platform_admin=True, source="serve")
_STOP = object()
_SCALARS = (bool, int, float, str)
_FIXED = pa.schema(
    [
        ("request_id", pa.string()),
        ("time", pa.timestamp("ms", tz="UTC")),
        ("deployment", pa.string()),
        ("version", pa.int64()),
        ("kind", pa.string()),
        ("latency_ms", pa.float64()),
        ("status", pa.int32()),
        ("row", pa.int32()),
    ]
)


@dataclass(frozen=True, slots=True)
class CaptureRecord:
    """One sampled request and its answer, as the inference server saw it.

    Attributes:
        request_id: The id the answer carried.
        time_ms: When the request arrived (Unix ms); picks the hour partition.
        deployment: The deployment's name.
        version: The model version that answered (the shadow's for ``kind="shadow"``).
        kind: ``live`` or ``shadow``.
        latency_ms: Time to answer.
        status: The HTTP status of the answer.
        inputs: One dict per input row, column -> value.
        outputs: One value per row (may be empty for a refused request).
        sensitive: Field names to mask besides those the deployment and signature name.
    """

    request_id: str
    time_ms: int
    deployment: str
    version: int
    kind: str
    latency_ms: float
    status: int
    inputs: list[dict[str, Any]]
    outputs: list[Any]
    sensitive: tuple[str, ...] = ()


@dataclass(slots=True)
class _Group:
    records: list[CaptureRecord] = field(default_factory=list)
    rows: int = 0


@dataclass(frozen=True, slots=True)
class _Masks:
    names: frozenset[str]
    """Input fields (and keys of dict outputs) to mask."""
    output: bool
    """The whole output is masked (the signature marks an output column sensitive)."""


class CaptureWriter:
    """Writes sampled payloads to the blob store off the request path.

    Args:
        services: The :class:`~mlplane.services.Services` to store through.
        worker_id: The inference worker's id, recorded with each file.
        principal: Who records the files (a platform admin; default the serving one).
        flush_s: Write what has gathered at least this often.
        max_rows: Write a group as soon as it holds this many rows.
        queue_size: Records waiting at most; more are dropped (counted in ``dropped``).

    Counters (read them any time): ``captured`` records written, ``rows_written``,
    ``files_written``, ``dropped`` records never written (queue full, closed, or their
    write failed) and ``errors`` (failed writes and malformed records).
    """

    def __init__(
        self,
        services: Any,
        *,
        worker_id: str,
        principal: Principal | None = None,
        flush_s: float = 5.0,
        max_rows: int = 50_000,
        queue_size: int = 10_000,
    ) -> None:
        self._services = services
        self._worker = worker_id
        self._p = principal or SERVE_PRINCIPAL
        self._flush_s = max(0.01, float(flush_s))
        self._max_rows = max(1, int(max_rows))
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, int(queue_size)))
        self._groups: dict[tuple[int, str], _Group] = {}
        self._deployments: dict[int, tuple[int, Any]] = {}  # id -> (generation, Deployment)
        self._signatures: dict[tuple[int, int], _Masks] = {}  # versions never change
        self._count_lock = threading.Lock()
        self._closed = False
        self.captured = self.rows_written = self.files_written = 0
        self.dropped = self.errors = 0
        self._thread = threading.Thread(target=self._run, name="mlplane-capture", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the request path --------------------------------------------------------------------

    def submit(self, deployment_id: int, record: CaptureRecord) -> None:
        """Queue ``record`` for capture; never blocks and never raises."""
        if not self._closed:
            try:
                self._queue.put_nowait((deployment_id, record))
                return
            except queue.Full:
                pass
        with self._count_lock:
            self.dropped += 1

    def close(self, timeout: float = 30.0) -> None:
        """Write everything queued and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:  # the thread is stuck in a write: leave it, count what waits
            log.warning("capture thread did not take the stop signal in %.0f s", timeout)
        self._thread.join(timeout)
        if not self._thread.is_alive():  # a record queued just before the stop signal
            self._drain()
            self._flush_all()

    # -- the background thread ---------------------------------------------------------------

    def _run(self) -> None:
        deadline = time.monotonic() + self._flush_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush_all()
                return
            if item is not None:
                self._add(*item)
            if time.monotonic() >= deadline:
                self._flush_all()
                deadline = time.monotonic() + self._flush_s

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._add(*item)

    def _add(self, deployment_id: int, record: CaptureRecord) -> None:
        try:
            hour = datetime.fromtimestamp(record.time_ms / 1000, UTC).strftime("%Y-%m-%dT%H")
            key = (int(deployment_id), hour)
            group = self._groups.setdefault(key, _Group())
            group.records.append(record)
            group.rows += max(len(record.inputs), len(record.outputs), 1)
        except Exception:
            self._failed(1, "a malformed capture record was dropped")
            return
        if group.rows >= self._max_rows:
            del self._groups[key]
            self._flush(key, group, self._generations())

    def _flush_all(self) -> None:
        if not self._groups:
            return
        groups, self._groups = self._groups, {}
        generations = self._generations()
        for key, group in sorted(groups.items()):
            self._flush(key, group, generations)

    def _generations(self) -> dict[int, int] | None:
        try:
            return dict(self._services.deployments.generations(self._p))
        except Exception:
            log.warning("capture: could not read deployment generations", exc_info=True)
            return None

    def _flush(
        self, key: tuple[int, str], group: _Group, generations: dict[int, int] | None
    ) -> None:
        deployment_id, hour = key
        try:
            if generations is None:
                raise RuntimeError("deployment generations unavailable")
            table = self._table(deployment_id, group.records, generations)
            sink = io.BytesIO()
            pq.write_table(table, sink, compression="zstd")
            data = sink.getvalue()
            refs, _ = self._services.chunks.put_chunks(_pieces(data))
            times = [r.time_ms for r in group.records]
            self._services.deployments.record_capture(
                self._p,
                deployment_id,
                hour=hour,
                chunks=[(r.digest, r.size) for r in refs],
                rows=table.num_rows,
                size=len(data),
                first_time=min(times),
                last_time=max(times),
                worker=self._worker,
            )
        except Exception as exc:
            self._failed(
                len(group.records),
                f"capture of {len(group.records)} requests of deployment {deployment_id} "
                f"({hour}) failed: {type(exc).__name__}: {exc}",
            )
            return
        with self._count_lock:
            self.captured += len(group.records)
            self.rows_written += table.num_rows
            self.files_written += 1

    def _failed(self, records: int, message: str) -> None:
        log.warning(message, exc_info=log.isEnabledFor(logging.DEBUG))
        with self._count_lock:
            self.errors += 1
            self.dropped += records

    # -- masking -----------------------------------------------------------------------------

    def _masks(self, deployment_id: int, version: int, generation: int) -> _Masks:
        cached = self._deployments.get(deployment_id)
        if cached is None or cached[0] != generation:
            found = self._services.deployments.active(self._p, [deployment_id])
            if not found:
                raise NotFound(f"deployment {deployment_id} was deleted")
            cached = self._deployments[deployment_id] = (generation, found[0])
        deployment = cached[1]
        sig = self._signatures.get((deployment_id, version))
        if sig is None:
            mv = self._services.registry.get_version(
                self._p, f"{deployment.model}@{version}", project=deployment.project
            )
            signature = mv.signature or {}
            inputs = [c for c in signature.get("inputs") or () if c.get("sensitive")]
            outputs = [c for c in signature.get("outputs") or () if c.get("sensitive")]
            sig = _Masks(frozenset(str(c["name"]) for c in inputs + outputs), bool(outputs))
            self._signatures[(deployment_id, version)] = sig
        return _Masks(sig.names | set(deployment.config.sensitive), sig.output)

    def _table(
        self, deployment_id: int, records: Sequence[CaptureRecord], generations: dict[int, int]
    ) -> pa.Table:
        generation = generations.get(deployment_id)
        if generation is None:
            raise NotFound(f"deployment {deployment_id} was deleted")
        fixed: dict[str, list[Any]] = {f.name: [] for f in _FIXED}
        inputs: list[dict[str, Any]] = []
        outputs: list[Any] = []
        for rec in records:
            masks = self._masks(deployment_id, rec.version, generation)
            names = masks.names | set(rec.sensitive)
            for i in range(max(len(rec.inputs), len(rec.outputs), 1)):
                for col, value in zip(
                    _FIXED.names,
                    (
                        rec.request_id,
                        rec.time_ms,
                        rec.deployment,
                        rec.version,
                        rec.kind,
                        rec.latency_ms,
                        rec.status,
                        i,
                    ),
                    strict=True,
                ):
                    fixed[col].append(value)
                row = rec.inputs[i] if i < len(rec.inputs) else {}
                inputs.append({str(k): MASK if k in names else v for k, v in row.items()})
                outputs.append(
                    _mask_output(rec.outputs[i], names, masks.output)
                    if i < len(rec.outputs)
                    else None
                )
        columns = {f.name: pa.array(fixed[f.name], f.type) for f in _FIXED}
        seen = dict.fromkeys(k for row in inputs for k in row)
        for name in seen:
            columns[f"input.{name}"] = _column([row.get(name) for row in inputs])
        columns["output"] = _column(outputs)
        return pa.table(columns)


def _mask_output(value: Any, names: frozenset[str] | set[str], whole: bool) -> Any:
    if whole:
        return MASK
    if isinstance(value, dict):
        return {k: MASK if k in names else v for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays as Python values."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None and not isinstance(value, _SCALARS):
        try:
            return tolist()
        except Exception:
            return value
    return value


def _kind(value: Any) -> str:
    for t in _SCALARS:  # bool before int: True is an int too
        if isinstance(value, t):
            return t.__name__
    return "other"


def _column(values: list[Any]) -> pa.Array:
    """Native when every value is a scalar of one kind (ints with floats are floats), else
    JSON text."""
    values = [_plain(v) for v in values]
    kinds = {_kind(v) for v in values if v is not None}
    if (len(kinds) <= 1 and "other" not in kinds) or kinds == {"int", "float"}:
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass  # an int beyond 64 bits
    return pa.array(
        [None if v is None else json.dumps(v, default=str, ensure_ascii=False) for v in values],
        pa.string(),
    )


def _pieces(data: bytes) -> Iterator[bytes]:
    for i in range(0, len(data), AVG_CHUNK):
        yield data[i : i + AVG_CHUNK]


# -- reading ---------------------------------------------------------------------------------


def read_captures(
    services: Any,
    p: Principal,
    name: str,
    *,
    project: str = projects.DEFAULT_PROJECT,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> pa.Table:
    """The deployment's captured rows with ``since_ms <= time < until_ms``, oldest first.

    Reading needs READ on the deployment and is audited
    (:meth:`~mlplane.serving.service.DeploymentService.captures`); files outside the
    window are not read. A column whose type differs between files (an output that was
    a number, then JSON) comes back as text.
    """
    _, files = services.deployments.captures(p, name, project=project)
    tables = []
    for f in files:
        if since_ms is not None and f["last_time"] < since_ms:
            continue
        if until_ms is not None and f["first_time"] >= until_ms:
            continue
        refs = [ChunkRef(str(d), int(s)) for d, s in f["chunks"]]
        data = b"".join(services.chunks.iter_bytes(refs))
        tables.append(pq.read_table(pa.BufferReader(data)))
    if not tables:
        return _FIXED.empty_table()
    table = pa.concat_tables(_unify(tables), promote_options="permissive")
    millis = pc.cast(table["time"], pa.int64())
    if since_ms is not None:
        table = table.filter(pc.greater_equal(millis, since_ms))
        millis = pc.cast(table["time"], pa.int64())
    if until_ms is not None:
        table = table.filter(pc.less(millis, until_ms))
    return table.sort_by([("time", "ascending"), ("request_id", "ascending"), ("row", "ascending")])


def _unify(tables: list[pa.Table]) -> list[pa.Table]:
    """Columns typed differently across files become text in every file."""
    types: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for f in t.schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
    mixed = {
        n
        for n, ts in types.items()
        if len(ts) > 1 and not all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in ts)
    }
    if not mixed:
        return tables
    out = []
    for t in tables:
        for n in mixed & set(t.column_names):
            i = t.schema.get_field_index(n)
            t = t.set_column(i, n, pc.cast(t[n], pa.string()))
        out.append(t)
    return out


__all__ = ["MASK", "CaptureRecord", "CaptureWriter", "read_captures"]
