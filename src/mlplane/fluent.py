"""The fluent API: ``mlplane.start_run()`` and friends, a thin layer over one :class:`Client`.

``log_metric`` only queues the point (microseconds); a background thread
sends batches. Queued points are sent on ``end_run``, at normal interpreter
exit and on SIGTERM, so nothing logged is lost when a job is stopped.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from mlplane.client import Client
from mlplane.config import load_settings
from mlplane.errors import InvalidInput
from mlplane.tracking.entities import Experiment, Run, RunInput, RunStatus, ViewType

log = logging.getLogger("mlplane")

_lock = threading.RLock()
_client: Client | None = None
_uri: str | None = None
_experiment_id: str | None = None
_stack: list[ActiveRun] = []
_hooks_installed = False


class ActiveRun:
    """The run started by :func:`start_run`; use it as a context manager."""

    def __init__(self, run: Run, client: Client) -> None:
        self._run = run
        self._client = client
        self._sampler: Any = None
        self._step = 0

    @property
    def info(self) -> Any:
        return self._run.info

    @property
    def run_id(self) -> str:
        return self._run.info.run_id

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
        if _stack and _stack[-1] is self:
            end_run(status)
        else:
            _finish(self, status)


def set_tracking_uri(uri: str | None) -> None:
    """Point the fluent API at a server (``http://…``) or an embedded store (path or DB URL)."""
    global _client, _uri
    with _lock:
        if _client is not None:
            _client.close()
        _client, _uri = None, uri


def get_tracking_uri() -> str:
    s = client().settings
    return s.uri or s.resolved_db_url


def client() -> Client:
    """The client the fluent API uses (built from ``MLPLANE_URI`` on first use)."""
    global _client
    with _lock:
        if _client is None:
            _client = Client(settings=load_settings(uri=_uri) if _uri else load_settings())
        return _client


def set_experiment(
    name: str | None = None, *, experiment_id: str | None = None, project: str | None = None
) -> Experiment:
    """Make an experiment current (created when named and missing)."""
    global _experiment_id
    c = client()
    if experiment_id is not None:
        exp = c.get_experiment(experiment_id)
    elif name:
        eid = c.get_or_create_experiment(name, project=project or "default")
        exp = c.get_experiment(eid)
    else:
        raise InvalidInput("set_experiment needs a name or an experiment_id")
    _experiment_id = exp.experiment_id
    return exp


def _current_experiment_id(c: Client) -> str:
    if _experiment_id is not None:
        return _experiment_id
    env_id = os.environ.get("MLPLANE_EXPERIMENT_ID")
    if env_id:
        return env_id
    return c.get_or_create_experiment(os.environ.get("MLPLANE_EXPERIMENT_NAME", "Default"))


def start_run(
    run_name: str | None = None,
    *,
    experiment_id: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
    capture_context: bool = True,
) -> ActiveRun:
    """Start a run and make it active. Nested runs need ``nested=True`` while one is active.

    The run sends heartbeats; if this process dies, the store marks it FAILED
    after ``heartbeat_timeout_s``. The run's context (git commit and diff,
    Python and package versions, OS, CPU/GPU, host, entry point, seed) is
    recorded as ``mlplane.*`` tags and artifacts.
    """
    c = client()
    with _lock:
        if _stack and not nested and parent_run_id is None:
            raise InvalidInput(
                f"run {_stack[-1].run_id} is already active: end it first, or pass nested=True"
            )
        parent = parent_run_id or (_stack[-1].run_id if _stack and nested else None)
    eid = experiment_id or (
        c.get_run(parent).info.experiment_id if parent else _current_experiment_id(c)
    )
    all_tags: dict[str, str] = dict(tags or {})
    ctx = None
    if capture_context:
        from mlplane import seeding
        from mlplane.tracking.context import capture_context as capture

        ctx = capture()
        all_tags = {**ctx.tags, **all_tags}
        seed = seeding.last_seed()
        if seed is not None:
            all_tags.setdefault("mlplane.seed", str(seed))
    if description:
        all_tags["mlplane.note"] = description
    run = c.create_run(eid, run_name=run_name, tags=all_tags, parent_run_id=parent, heartbeat=True)
    active = ActiveRun(run, c)
    c.buffer.watch(run.info.run_id)
    _install_hooks()
    with _lock:
        _stack.append(active)
    if ctx is not None:
        _log_context_artifacts(c, run.info.run_id, ctx)
    if log_system_metrics if log_system_metrics is not None else c.settings.log_system_metrics:
        _start_sampler(active, c)
    return active


def _log_context_artifacts(c: Client, run_id: str, ctx: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(ctx.packages, encoding="utf-8")
        c.transport.log_artifact(run_id, "mlplane/requirements.txt", req)
        if ctx.git_diff:
            diff = Path(tmp) / "git.diff"
            diff.write_text(ctx.git_diff, encoding="utf-8")
            c.transport.log_artifact(run_id, "mlplane/git.diff", diff)


def _start_sampler(active: ActiveRun, c: Client) -> None:
    from mlplane.tracking.sysmetrics import SystemMetricsSampler

    run_id = active.run_id

    def sink(points: list[tuple[str, float]], ts: int) -> None:
        step = active._step
        active._step += 1
        for key, value in points:
            c.buffer.add(run_id, key, value, ts, step)

    active._sampler = SystemMetricsSampler(
        sink, interval_s=c.settings.system_metrics_interval_s
    ).start()


def active_run() -> ActiveRun | None:
    return _stack[-1] if _stack else None


def _require_run() -> ActiveRun:
    if _stack:
        return _stack[-1]
    return start_run()


def end_run(status: str | RunStatus = RunStatus.FINISHED) -> None:
    """End the active run (queued metrics are sent first)."""
    with _lock:
        if not _stack:
            return
        active = _stack.pop()
    _finish(active, RunStatus(str(status).upper()))


def _finish(active: ActiveRun, status: RunStatus) -> None:
    c = active._client
    if active._sampler is not None:
        active._sampler.stop()
    c.buffer.unwatch(active.run_id)
    dropped = c.flush()
    if dropped:
        log.warning("mlplane: %d metric points could not be delivered and were dropped", dropped)
    c.update_run(active.run_id, status=status, end_time=time.time_ns() // 1_000_000)


def log_param(key: str, value: object) -> None:
    client().log_param(_require_run().run_id, key, value)


def log_params(params: Mapping[str, object]) -> None:
    client().log_params(_require_run().run_id, params)


def set_tag(key: str, value: object) -> None:
    client().set_tag(_require_run().run_id, key, value)


def set_tags(tags: Mapping[str, object]) -> None:
    client().set_tags(_require_run().run_id, tags)


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    timestamp: int | None = None,
    *,
    synchronous: bool = False,
) -> None:
    """Log one point; queued and sent in the background unless ``synchronous``."""
    run = _stack[-1] if _stack else _require_run()
    ts = timestamp if timestamp is not None else time.time_ns() // 1_000_000
    if synchronous:
        client().log_metric(run.run_id, key, value, step or 0, ts)
    else:
        run._client.buffer.add(run.run_id, key, float(value), ts, step or 0)


def log_metrics(
    metrics: Mapping[str, float],
    step: int | None = None,
    timestamp: int | None = None,
    *,
    synchronous: bool = False,
) -> None:
    run = _stack[-1] if _stack else _require_run()
    client().log_metrics(run.run_id, metrics, step or 0, timestamp, synchronous=synchronous)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    client().log_artifact(_require_run().run_id, local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    client().log_artifacts(_require_run().run_id, local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    client().log_text(_require_run().run_id, text, artifact_file)


def log_dict(data: Any, artifact_file: str) -> None:
    client().log_dict(_require_run().run_id, data, artifact_file)


def log_input(
    name: str | Any,
    *,
    kind: str = "dataset",
    version: str = "",
    digest: str = "",
    source: str = "",
    context: str = "",
    allow_pii: bool = False,
) -> None:
    """Record that the active run read something: a dataset version (what
    ``mlplane.data.get`` or ``mlplane.data.add`` returned) or anything else by name.

    A version flagged with unhandled PII is refused (``QualityGateFailed``) unless
    ``allow_pii=True``, which records the decision in the audit log.
    """
    from mlplane.data import Dataset
    from mlplane.datasets.entities import DatasetVersion

    if isinstance(name, Dataset):
        name = name.version
    if isinstance(name, DatasetVersion):
        dv = name
        name, version, digest = dv.name, str(dv.version), dv.digest
        source = source or f"mlplane-data:{dv.project}/{dv.name}@{dv.version}"
    client().log_inputs(
        _require_run().run_id,
        [
            RunInput(
                kind=kind,
                name=name,
                version=version,
                digest=digest,
                source=source,
                context=context,
                allow_pii=allow_pii,
            )
        ],
    )


def set_note(text: str) -> None:
    client().set_note(_require_run().run_id, text)


def flush() -> int:
    """Send queued metric points now; returns how many were dropped so far."""
    return client().flush()


def get_run(run_id: str) -> Run:
    return client().get_run(run_id)


def seed_everything(seed: int, *, deterministic: bool = False) -> dict[str, str]:
    """Seed Python, NumPy and torch (when installed) and record the seed on the active run."""
    from mlplane import seeding

    tags = seeding.seed_everything(seed, deterministic=deterministic)
    if _stack:
        client().set_tags(_stack[-1].run_id, tags)
    return tags


def search_runs(
    experiment_ids: Sequence[str] | None = None,
    filter_string: str = "",
    order_by: Sequence[str] | None = None,
    max_results: int = 100_000,
    *,
    experiment_names: Sequence[str] | None = None,
    view_type: ViewType | str = ViewType.ACTIVE_ONLY,
    output_format: str = "pandas",
) -> Any:
    """Runs as a pandas DataFrame (MLflow's columns) or, with ``output_format="list"``, Runs."""
    c = client()
    ids = list(experiment_ids or [])
    for name in experiment_names or []:
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            ids.append(exp.experiment_id)
    if not ids and not experiment_names:
        ids = [_current_experiment_id(c)]
    runs: list[Run] = []
    token = None
    while len(runs) < max_results:
        page = c.search_runs(
            ids, filter_string, view_type, min(50_000, max_results - len(runs)), order_by, token
        )
        runs.extend(page.runs)
        token = page.next_page_token
        if not token:
            break
    if output_format == "list":
        return runs
    if output_format != "pandas":
        raise InvalidInput("output_format must be 'pandas' or 'list'")
    return runs_to_frame(runs)


def runs_to_frame(runs: Sequence[Run]) -> Any:
    import pandas as pd

    rows = []
    for r in runs:
        i = r.info
        row: dict[str, Any] = {
            "run_id": i.run_id,
            "experiment_id": i.experiment_id,
            "status": i.status,
            "artifact_uri": i.artifact_uri,
            "start_time": pd.to_datetime(i.start_time, unit="ms", utc=True),
            "end_time": pd.to_datetime(i.end_time, unit="ms", utc=True) if i.end_time else pd.NaT,
            "run_name": i.run_name,
        }
        row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    return pd.DataFrame(rows)


# -- process hooks -------------------------------------------------------------------------------


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_at_exit)
    if threading.current_thread() is threading.main_thread():
        try:
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                signal.signal(signal.SIGTERM, _on_sigterm)
        except (ValueError, OSError):  # not allowed here (embedded interpreters)
            pass


def _end_all(status: RunStatus) -> None:
    while _stack:
        try:
            end_run(status)
        except Exception as exc:
            log.warning("mlplane: could not end run at exit: %s", exc)
            with _lock:
                if _stack:
                    _stack.pop()


def _at_exit() -> None:
    failed = getattr(sys, "last_value", None) is not None
    _end_all(RunStatus.FAILED if failed else RunStatus.FINISHED)
    if _client is not None:
        try:
            _client.flush()
        except Exception:  # the interpreter is going away
            pass


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _end_all(RunStatus.KILLED)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
