"""The in-process transport: calls the services directly, as the local admin."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplane.client._deployments import EmbeddedDeployments
from mlplane.client.transport import Transport
from mlplane.config import Settings
from mlplane.datasets.entities import AddResult, DatasetLineage, DatasetVersion
from mlplane.gc import GcReport, collect_garbage
from mlplane.registry.entities import ModelLineage, ModelVersion, RegisteredModel
from mlplane.security import Principal, local_admin
from mlplane.services import Services

if TYPE_CHECKING:
    from mlplane.tracking.service import TrackingService
from mlplane.tracking.entities import (
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


class EmbeddedTransport(EmbeddedDeployments, Transport):
    """Direct service calls on this machine's store (SQLite or PostgreSQL + blobs)."""

    def __init__(self, settings: Settings, principal: Principal | None = None) -> None:
        self.services = Services.from_settings(settings)
        self.principal = principal or local_admin()
        self._reap_every = max(1.0, settings.heartbeat_timeout_s / 4)
        self._last_reap = 0.0
        self._reap_lock = threading.Lock()
        self._tracking: TrackingService | None = None

    @property
    def _t(self) -> TrackingService:
        """The tracking service, built on first use (a data command never needs it); stale
        runs are reaped then, as readers do later on."""
        if self._tracking is None:
            self._tracking = self.services.tracking
            self._maybe_reap()
        return self._tracking

    def _maybe_reap(self) -> None:
        # No server runs the reaper in embedded mode: readers do it, throttled.
        now = time.monotonic()
        if now - self._last_reap < self._reap_every or not self._reap_lock.acquire(blocking=False):
            return
        try:
            self._last_reap = now
            self._t.reap_stale_runs(self.services.settings.heartbeat_timeout_s)
        finally:
            self._reap_lock.release()

    def create_experiment(self, name, *, project, artifact_location, tags, description):  # type: ignore[no-untyped-def]
        return self._t.create_experiment(
            self.principal,
            name,
            project=project,
            artifact_location=artifact_location,
            tags=tags,
            description=description,
        )

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._t.get_experiment(self.principal, experiment_id)

    def get_experiment_by_name(self, name: str, *, project: str) -> Experiment:
        return self._t.get_experiment_by_name(self.principal, name, project=project)

    def search_experiments(
        self, *, view_type, name_like, project, max_results, page_token
    ) -> ExperimentPage:  # type: ignore[no-untyped-def]
        return self._t.search_experiments(
            self.principal,
            view_type=ViewType(view_type),
            name_like=name_like,
            project=project,
            max_results=max_results,
            page_token=page_token,
        )

    def update_experiment(
        self, experiment_id: str, *, name: str | None, description: str | None
    ) -> None:
        self._t.update_experiment(self.principal, experiment_id, name=name, description=description)

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self._t.set_experiment_tag(self.principal, experiment_id, key, value)

    def delete_experiment(self, experiment_id: str) -> None:
        self._t.delete_experiment(self.principal, experiment_id)

    def restore_experiment(self, experiment_id: str) -> None:
        self._t.restore_experiment(self.principal, experiment_id)

    def create_run(
        self, experiment_id, *, run_name, start_time, tags, parent_run_id, heartbeat
    ) -> Run:  # type: ignore[no-untyped-def]
        return self._t.create_run(
            self.principal,
            experiment_id,
            run_name=run_name,
            start_time=start_time,
            tags=tags,
            parent_run_id=parent_run_id,
            heartbeat=heartbeat,
        )

    def get_run(self, run_id: str) -> Run:
        self._maybe_reap()
        return self._t.get_run(self.principal, run_id)

    def update_run(
        self, run_id: str, *, status: str | None, end_time: int | None, run_name: str | None
    ) -> RunInfo:
        return self._t.update_run(
            self.principal, run_id, status=status, end_time=end_time, run_name=run_name
        )

    def delete_run(self, run_id: str) -> None:
        self._t.delete_run(self.principal, run_id)

    def restore_run(self, run_id: str) -> None:
        self._t.restore_run(self.principal, run_id)

    def purge_run(self, run_id: str) -> None:
        self._t.purge_run(self.principal, run_id)

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] | MetricColumns,
        params: Mapping[str, object] | None,
        tags: Mapping[str, object] | None,
    ) -> None:
        self._t.log_batch(self.principal, run_id, metrics=metrics, params=params, tags=tags)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._t.delete_tag(self.principal, run_id, key)

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        self._t.log_inputs(self.principal, run_id, inputs)

    def get_metric_histories(
        self, run_id: str, keys: Sequence[str] | None
    ) -> dict[str, list[Metric]]:
        return self._t.get_metric_histories(self.principal, run_id, keys)

    def search_runs(
        self, experiment_ids, *, filter_string, view_type, max_results, order_by, page_token
    ) -> RunPage:  # type: ignore[no-untyped-def]
        self._maybe_reap()
        return self._t.search_runs(
            self.principal,
            experiment_ids,
            filter_string=filter_string,
            view_type=ViewType(view_type),
            max_results=max_results,
            order_by=order_by,
            page_token=page_token,
        )

    def heartbeat(self, run_ids: Sequence[str]) -> None:
        self._t.heartbeat(self.principal, run_ids)

    def log_artifact(
        self, run_id: str, path: str, local_file: str | os.PathLike[str]
    ) -> ArtifactInfo:
        return self._t.log_artifact(self.principal, run_id, path, local_file)

    def list_artifacts(
        self, run_id: str, path: str | None, *, recursive: bool
    ) -> list[ArtifactInfo]:
        return self._t.list_artifacts(self.principal, run_id, path, recursive=recursive)

    def iter_artifact(self, run_id: str, path: str) -> Iterator[bytes]:
        return self._t.iter_artifact(self.principal, run_id, path)

    def add_dataset(  # type: ignore[no-untyped-def]
        self,
        name,
        source,
        *,
        project,
        progress,
        contract=None,
        pii=None,
        total=None,
        tables_only=False,
    ) -> AddResult:
        return self.services.data.add(
            self.principal,
            name,
            source,
            project=project,
            progress=progress,
            contract=contract,
            pii=pii,
            total=total,
            tables_only=tables_only,
        )

    def sample_dataset(
        self, ref: str, *, fraction: float, seed: int, into: str | None, project: str
    ) -> AddResult:
        return self.services.data.sample(
            self.principal, ref, fraction=fraction, seed=seed, into=into, project=project
        )

    def dataset_lineage(self, ref: str, *, project: str) -> DatasetLineage:
        return self.services.dataset_lineage(self.principal, ref, project=project)

    def collect_garbage(self, *, grace_s: float | None, dry_run: bool) -> GcReport:
        return collect_garbage(self.services, self.principal, grace_s=grace_s, dry_run=dry_run)

    def get_dataset(self, ref: str, *, project: str) -> DatasetVersion:
        return self.services.data.get(self.principal, ref, project=project)

    def list_datasets(self, *, project: str) -> list[DatasetVersion]:
        return self.services.data.list_datasets(self.principal, project=project)

    def dataset_versions(self, name: str, *, project: str) -> list[DatasetVersion]:
        return self.services.data.versions(self.principal, name, project=project)

    def tag_dataset(self, ref: str, tag: str, *, project: str) -> DatasetVersion:
        return self.services.data.tag(self.principal, ref, tag, project=project)

    def download_dataset(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        project: str,
        progress: Callable[[int], None] | None = None,
    ) -> str:
        return str(
            self.services.data.materialize(
                self.principal, ref, dest, project=project, progress=progress
            )
        )

    # -- model registry ----------------------------------------------------------------------

    def register_model(
        self, name: str, folder: str | os.PathLike[str], **options: Any
    ) -> ModelVersion:
        return self.services.registry.register_folder(self.principal, name, Path(folder), **options)

    def get_model_version(self, ref: str, *, project: str) -> ModelVersion:
        return self.services.registry.get_version(self.principal, ref, project=project)

    def list_models(self, *, project: str) -> list[RegisteredModel]:
        return self.services.registry.list_models(self.principal, project=project)

    def get_model(self, name: str, *, project: str) -> RegisteredModel:
        return self.services.registry.get_model(self.principal, name, project=project)

    def model_versions(self, name: str, *, project: str) -> list[ModelVersion]:
        return self.services.registry.versions(self.principal, name, project=project)

    def set_model_alias(self, name: str, alias: str, version: int, *, project: str) -> ModelVersion:
        return self.services.registry.set_alias(
            self.principal, name, alias, version, project=project
        )

    def delete_model_alias(self, name: str, alias: str, *, project: str) -> None:
        self.services.registry.delete_alias(self.principal, name, alias, project=project)

    def set_model_policy(
        self,
        name: str,
        policy: Mapping[str, Any] | None,
        protected: list[str] | None,
        *,
        project: str,
    ) -> RegisteredModel:
        return self.services.registry.set_policy(
            self.principal, name, policy, protected=protected, project=project
        )

    def update_model_card(
        self, ref: str, fields: Mapping[str, str], *, project: str
    ) -> ModelVersion:
        return self.services.registry.update_card(self.principal, ref, fields, project=project)

    def set_model_tag(self, ref: str, key: str, value: str, *, project: str) -> None:
        self.services.registry.set_tag(self.principal, ref, key, value, project=project)

    def model_lineage(self, ref: str, *, project: str) -> ModelLineage:
        return self.services.registry.lineage(self.principal, ref, project=project)

    def fetch_model(self, ref: str, *, project: str) -> tuple[ModelVersion, str, dict[str, Any]]:
        version, folder, info = self.services.registry.fetch(self.principal, ref, project=project)
        return version, str(folder), info

    def create_signing_key(self, *, project: str, required: bool) -> str:
        return self.services.registry.create_signing_key(
            self.principal, project=project, required=required
        )

    def close(self) -> None:
        self.services.close()
