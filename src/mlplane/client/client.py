"""The SDK's client: one interface whether the store is in this process or on a server."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplane.client.buffer import MetricBuffer
from mlplane.client.transport import Transport
from mlplane.config import Settings, load_settings
from mlplane.errors import AlreadyExists, InvalidInput, NotFound
from mlplane.projects import DEFAULT_PROJECT
from mlplane.tracking import validation as check

if TYPE_CHECKING:
    from mlplane.security import Principal

from mlplane.tracking.entities import (
    TAG_NOTE,
    ArtifactInfo,
    Experiment,
    ExperimentPage,
    Metric,
    MetricColumns,
    Run,
    RunInfo,
    RunInput,
    RunPage,
    ViewType,
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_transport(settings: Settings, principal: Principal | None = None) -> Transport:
    """The transport ``settings.uri`` asks for: HTTP for ``http(s)://``, else embedded."""
    if settings.is_remote:
        from mlplane.client.http import HttpTransport

        return HttpTransport(settings)
    from mlplane.client.embedded import EmbeddedTransport

    return EmbeddedTransport(settings, principal)


class Client:
    """Track experiments and runs.

    Args:
        uri: where to send calls; ``http(s)://host:port`` for a server, a path or a
            ``sqlite:///``/``postgresql://`` URL for the embedded store. Defaults to
            ``MLPLANE_URI``, else the embedded store under ``MLPLANE_HOME``.
        settings: a full settings object (overrides ``uri``).
        transport: a ready transport (tests and advanced use).
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        settings: Settings | None = None,
        transport: Transport | None = None,
    ) -> None:
        if settings is None:
            settings = load_settings(uri=uri) if uri else load_settings()
        self.settings = settings
        self.transport = transport or make_transport(settings)
        self._buffer: MetricBuffer | None = None

    # -- experiments -------------------------------------------------------------------------

    def create_experiment(
        self,
        name: str,
        *,
        project: str = DEFAULT_PROJECT,
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
    ) -> str:
        """Create an experiment and return its id."""
        return self.transport.create_experiment(
            name,
            project=project,
            artifact_location=artifact_location,
            tags=tags,
            description=description,
        )

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self.transport.get_experiment(str(experiment_id))

    def get_experiment_by_name(
        self, name: str, *, project: str = DEFAULT_PROJECT
    ) -> Experiment | None:
        """The experiment named ``name``, or None."""
        try:
            return self.transport.get_experiment_by_name(name, project=project)
        except NotFound:
            return None

    def get_or_create_experiment(self, name: str, *, project: str = DEFAULT_PROJECT) -> str:
        found = self.get_experiment_by_name(name, project=project)
        if found is not None:
            return found.experiment_id
        try:
            return self.create_experiment(name, project=project)
        except AlreadyExists:  # created meanwhile by another process
            found = self.get_experiment_by_name(name, project=project)
            if found is None:
                raise
            return found.experiment_id

    def search_experiments(
        self,
        *,
        view_type: ViewType | str = ViewType.ACTIVE_ONLY,
        name_like: str | None = None,
        project: str | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
    ) -> ExperimentPage:
        return self.transport.search_experiments(
            view_type=str(ViewType(view_type)),
            name_like=name_like,
            project=project,
            max_results=max_results,
            page_token=page_token,
        )

    def list_experiments(self, **kwargs: Any) -> list[Experiment]:
        """Every experiment matching ``kwargs`` of :meth:`search_experiments`, all pages."""
        out: list[Experiment] = []
        token = None
        while True:
            page = self.search_experiments(page_token=token, **kwargs)
            out.extend(page.experiments)
            token = page.next_page_token
            if not token:
                return out

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self.transport.update_experiment(str(experiment_id), name=new_name, description=None)

    def update_experiment(
        self, experiment_id: str, *, name: str | None = None, description: str | None = None
    ) -> None:
        self.transport.update_experiment(str(experiment_id), name=name, description=description)

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self.transport.set_experiment_tag(str(experiment_id), key, str(value))

    def delete_experiment(self, experiment_id: str) -> None:
        self.transport.delete_experiment(str(experiment_id))

    def restore_experiment(self, experiment_id: str) -> None:
        self.transport.restore_experiment(str(experiment_id))

    # -- runs --------------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None = None,
        start_time: int | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        heartbeat: bool = False,
    ) -> Run:
        """Start a run (status RUNNING)."""
        return self.transport.create_run(
            str(experiment_id),
            run_name=run_name,
            start_time=start_time,
            tags=tags,
            parent_run_id=parent_run_id,
            heartbeat=heartbeat,
        )

    def get_run(self, run_id: str) -> Run:
        return self.transport.get_run(run_id)

    def update_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
    ) -> RunInfo:
        return self.transport.update_run(
            run_id, status=status, end_time=end_time, run_name=run_name
        )

    def set_terminated(
        self, run_id: str, status: str = "FINISHED", end_time: int | None = None
    ) -> RunInfo:
        """End a run: FINISHED, FAILED or KILLED. Queued metrics are sent first."""
        if status.upper() not in ("FINISHED", "FAILED", "KILLED"):
            raise InvalidInput(
                f"{status!r} is not a terminal status: use FINISHED, FAILED or KILLED"
            )
        self.flush()
        return self.update_run(run_id, status=status.upper(), end_time=end_time or _now_ms())

    def delete_run(self, run_id: str) -> None:
        self.transport.delete_run(run_id)

    def restore_run(self, run_id: str) -> None:
        self.transport.restore_run(run_id)

    def purge_run(self, run_id: str) -> None:
        """Delete a run and all it logged, for good."""
        self.transport.purge_run(run_id)

    # -- logging -----------------------------------------------------------------------------

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] | MetricColumns = (),
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, object] | None = None,
    ) -> None:
        """Log many points, params and tags in one call (and one transaction)."""
        self.transport.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def log_param(self, run_id: str, key: str, value: object) -> None:
        self.log_batch(run_id, params={key: value})

    def log_params(self, run_id: str, params: Mapping[str, object]) -> None:
        self.log_batch(run_id, params=params)

    def set_tag(self, run_id: str, key: str, value: object) -> None:
        self.log_batch(run_id, tags={key: value})

    def set_tags(self, run_id: str, tags: Mapping[str, object]) -> None:
        self.log_batch(run_id, tags=tags)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.transport.delete_tag(run_id, key)

    def set_note(self, run_id: str, text: str) -> None:
        self.set_tag(run_id, TAG_NOTE, text)

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        step: int = 0,
        timestamp: int | None = None,
        *,
        synchronous: bool = True,
    ) -> None:
        """Log one point; with ``synchronous=False`` it is queued and sent in the background."""
        ts = timestamp if timestamp is not None else _now_ms()
        if synchronous:
            self.log_batch(run_id, metrics=[Metric(key, float(value), ts, int(step))])
        else:
            self.buffer.add(run_id, key, value, ts, step)

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float],
        step: int = 0,
        timestamp: int | None = None,
        *,
        synchronous: bool = True,
    ) -> None:
        ts = timestamp if timestamp is not None else _now_ms()
        if synchronous:
            self.log_batch(
                run_id, metrics=[Metric(k, float(v), ts, int(step)) for k, v in metrics.items()]
            )
        else:
            add = self.buffer.add
            for k, v in metrics.items():
                add(run_id, k, v, ts, step)

    @property
    def buffer(self) -> MetricBuffer:
        """The background batcher for asynchronous metric logging (created on first use)."""
        if self._buffer is None:
            s = self.settings
            self._buffer = MetricBuffer(
                lambda run_id, pts: self.transport.log_batch(
                    run_id, metrics=pts, params=None, tags=None
                ),
                heartbeat=self.transport.heartbeat,
                flush_interval_s=s.flush_interval_s,
                flush_max_points=s.flush_max_points,
                buffer_max_points=s.buffer_max_points,
                heartbeat_interval_s=s.heartbeat_interval_s,
            )
        return self._buffer

    def flush(self) -> int:
        """Send every queued metric point now; returns how many were dropped so far."""
        return self._buffer.flush() if self._buffer is not None else 0

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        self.transport.log_inputs(run_id, inputs)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return self.transport.get_metric_histories(run_id, [key]).get(key, [])

    def get_metric_histories(
        self, run_id: str, keys: Sequence[str] | None = None
    ) -> dict[str, list[Metric]]:
        return self.transport.get_metric_histories(run_id, keys)

    # -- search ------------------------------------------------------------------------------

    def search_runs(
        self,
        experiment_ids: Sequence[str] | str,
        filter_string: str = "",
        view_type: ViewType | str = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> RunPage:
        """One page of runs matching the filter (MLflow syntax, plus OR and parentheses)."""
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        return self.transport.search_runs(
            [str(i) for i in ids],
            filter_string=filter_string or None,
            view_type=str(ViewType(view_type)),
            max_results=max_results,
            order_by=order_by,
            page_token=page_token,
        )

    def search_all_runs(self, experiment_ids: Sequence[str] | str, **kwargs: Any) -> Iterator[Run]:
        """Every matching run, page after page."""
        token = None
        while True:
            page = self.search_runs(experiment_ids, page_token=token, **kwargs)
            yield from page.runs
            token = page.next_page_token
            if not token:
                return

    # -- artifacts ---------------------------------------------------------------------------

    def log_artifact(
        self, run_id: str, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> ArtifactInfo:
        """Store a local file under ``artifact_path/<file name>``."""
        p = Path(local_path)
        if not p.is_file():
            raise InvalidInput(f"{p} is not a file (use log_artifacts for a folder)")
        dest = f"{artifact_path.strip('/')}/{p.name}" if artifact_path else p.name
        return self.transport.log_artifact(run_id, check.artifact_path(dest), p)

    def log_artifacts(
        self, run_id: str, local_dir: str | os.PathLike[str], artifact_path: str | None = None
    ) -> list[ArtifactInfo]:
        """Store every file below a local folder, keeping the layout."""
        root = Path(local_dir)
        if not root.is_dir():
            raise InvalidInput(f"{root} is not a folder")
        out = []
        for f in sorted(root.rglob("*")):
            if f.is_file() and not f.is_symlink():
                rel = f.relative_to(root).as_posix()
                dest = f"{artifact_path.strip('/')}/{rel}" if artifact_path else rel
                out.append(self.transport.log_artifact(run_id, check.artifact_path(dest), f))
        return out

    def log_text(self, run_id: str, text: str, artifact_file: str) -> ArtifactInfo:
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "artifact"
            f.write_text(text, encoding="utf-8")
            return self.transport.log_artifact(run_id, check.artifact_path(artifact_file), f)

    def log_dict(self, run_id: str, data: Any, artifact_file: str) -> ArtifactInfo:
        return self.log_text(
            run_id, json.dumps(data, indent=2, sort_keys=True, default=str), artifact_file
        )

    def list_artifacts(
        self, run_id: str, path: str | None = None, *, recursive: bool = False
    ) -> list[ArtifactInfo]:
        return self.transport.list_artifacts(run_id, path, recursive=recursive)

    def read_artifact(self, run_id: str, path: str) -> bytes:
        return b"".join(self.transport.iter_artifact(run_id, path))

    def download_artifacts(
        self, run_id: str, path: str = "", dst_path: str | os.PathLike[str] | None = None
    ) -> str:
        """Download a file or a folder of artifacts; returns the local path."""
        dst = Path(dst_path) if dst_path is not None else Path(tempfile.mkdtemp(prefix="mlplane-"))
        clean = check.artifact_path(path, allow_root=True)
        files = self.list_artifacts(run_id, clean or None, recursive=True)
        if not files:
            single = dst / Path(clean).name
            self._download_one(run_id, clean, single)
            return str(single)
        base = (clean + "/") if clean else ""
        for f in files:
            rel = f.path[len(base) :] if clean else f.path
            self._download_one(run_id, f.path, dst / (Path(clean).name if clean else "") / rel)
        return str(dst / Path(clean).name) if clean else str(dst)

    def _download_one(self, run_id: str, path: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            with open(tmp, "wb") as out:
                for chunk in self.transport.iter_artifact(run_id, path):
                    out.write(chunk)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
