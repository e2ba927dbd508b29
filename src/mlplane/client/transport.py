"""The seam between the SDK and where calls go: in-process or over HTTP.

Both transports implement this one interface, so :class:`mlplane.Client`
(and the conformance suite) cannot tell them apart.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlplane.client._deployments import DeploymentCalls
from mlplane.datasets.entities import AddResult, DatasetLineage, DatasetVersion
from mlplane.registry.entities import ModelLineage, ModelVersion, RegisteredModel
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
)

if TYPE_CHECKING:
    from mlplane.gc import GcReport


class Transport(DeploymentCalls):
    """Every tracking call the SDK can make. See :class:`TrackingService` for semantics."""

    @abc.abstractmethod
    def create_experiment(
        self,
        name: str,
        *,
        project: str,
        artifact_location: str | None,
        tags: Mapping[str, str] | None,
        description: str,
    ) -> str: ...

    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> Experiment: ...

    @abc.abstractmethod
    def get_experiment_by_name(self, name: str, *, project: str) -> Experiment: ...

    @abc.abstractmethod
    def search_experiments(
        self,
        *,
        view_type: str,
        name_like: str | None,
        project: str | None,
        max_results: int,
        page_token: str | None,
    ) -> ExperimentPage: ...

    @abc.abstractmethod
    def update_experiment(
        self, experiment_id: str, *, name: str | None, description: str | None
    ) -> None: ...

    @abc.abstractmethod
    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def delete_experiment(self, experiment_id: str) -> None: ...

    @abc.abstractmethod
    def restore_experiment(self, experiment_id: str) -> None: ...

    @abc.abstractmethod
    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None,
        start_time: int | None,
        tags: Mapping[str, str] | None,
        parent_run_id: str | None,
        heartbeat: bool,
    ) -> Run: ...

    @abc.abstractmethod
    def get_run(self, run_id: str) -> Run: ...

    @abc.abstractmethod
    def update_run(
        self, run_id: str, *, status: str | None, end_time: int | None, run_name: str | None
    ) -> RunInfo: ...

    @abc.abstractmethod
    def delete_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def restore_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def purge_run(self, run_id: str) -> None: ...

    @abc.abstractmethod
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] | MetricColumns,
        params: Mapping[str, object] | None,
        tags: Mapping[str, object] | None,
    ) -> None: ...

    @abc.abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None: ...

    @abc.abstractmethod
    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None: ...

    @abc.abstractmethod
    def get_metric_histories(
        self, run_id: str, keys: Sequence[str] | None
    ) -> dict[str, list[Metric]]: ...

    @abc.abstractmethod
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None,
        view_type: str,
        max_results: int,
        order_by: Sequence[str] | None,
        page_token: str | None,
    ) -> RunPage: ...

    @abc.abstractmethod
    def heartbeat(self, run_ids: Sequence[str]) -> None: ...

    @abc.abstractmethod
    def log_artifact(
        self, run_id: str, path: str, local_file: str | os.PathLike[str]
    ) -> ArtifactInfo: ...

    @abc.abstractmethod
    def list_artifacts(
        self, run_id: str, path: str | None, *, recursive: bool
    ) -> list[ArtifactInfo]: ...

    @abc.abstractmethod
    def iter_artifact(self, run_id: str, path: str) -> Iterator[bytes]: ...

    # -- datasets ----------------------------------------------------------------------------

    @abc.abstractmethod
    def add_dataset(
        self,
        name: str,
        source: str | os.PathLike[str],
        *,
        project: str,
        progress: Callable[[int], None] | None,
        contract: str | None = None,
        pii: str | Mapping[str, str] | None = None,
        total: Callable[[int], None] | None = None,
        tables_only: bool = False,
    ) -> AddResult:
        """``contract`` is the JSON of a loaded :class:`Contract` (checked client-side first);
        ``total`` is told the bytes the add will read, once known (for a progress bar);
        ``tables_only`` allows the result's version to list only its table files (a
        server answers with every file regardless)."""

    @abc.abstractmethod
    def sample_dataset(
        self, ref: str, *, fraction: float, seed: int, into: str | None, project: str
    ) -> AddResult: ...

    @abc.abstractmethod
    def dataset_lineage(self, ref: str, *, project: str) -> DatasetLineage: ...

    @abc.abstractmethod
    def collect_garbage(self, *, grace_s: float | None, dry_run: bool) -> GcReport: ...

    @abc.abstractmethod
    def get_dataset(self, ref: str, *, project: str) -> DatasetVersion: ...

    @abc.abstractmethod
    def list_datasets(self, *, project: str) -> list[DatasetVersion]: ...

    @abc.abstractmethod
    def dataset_versions(self, name: str, *, project: str) -> list[DatasetVersion]: ...

    @abc.abstractmethod
    def tag_dataset(self, ref: str, tag: str, *, project: str) -> DatasetVersion: ...

    @abc.abstractmethod
    def download_dataset(
        self,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        project: str,
        progress: Callable[[int], None] | None = None,
    ) -> str: ...

    # -- model registry ----------------------------------------------------------------------

    @abc.abstractmethod
    def register_model(
        self, name: str, folder: str | os.PathLike[str], **options: Any
    ) -> ModelVersion:
        """Register a version folder (see :meth:`RegistryService.register_folder`)."""

    @abc.abstractmethod
    def get_model_version(self, ref: str, *, project: str) -> ModelVersion: ...

    @abc.abstractmethod
    def list_models(self, *, project: str) -> list[RegisteredModel]: ...

    @abc.abstractmethod
    def get_model(self, name: str, *, project: str) -> RegisteredModel: ...

    @abc.abstractmethod
    def model_versions(self, name: str, *, project: str) -> list[ModelVersion]: ...

    @abc.abstractmethod
    def set_model_alias(
        self, name: str, alias: str, version: int, *, project: str
    ) -> ModelVersion: ...

    @abc.abstractmethod
    def delete_model_alias(self, name: str, alias: str, *, project: str) -> None: ...

    @abc.abstractmethod
    def set_model_policy(
        self,
        name: str,
        policy: Mapping[str, Any] | None,
        protected: list[str] | None,
        *,
        project: str,
    ) -> RegisteredModel: ...

    @abc.abstractmethod
    def update_model_card(
        self, ref: str, fields: Mapping[str, str], *, project: str
    ) -> ModelVersion: ...

    @abc.abstractmethod
    def set_model_tag(self, ref: str, key: str, value: str, *, project: str) -> None: ...

    @abc.abstractmethod
    def model_lineage(self, ref: str, *, project: str) -> ModelLineage: ...

    @abc.abstractmethod
    def fetch_model(self, ref: str, *, project: str) -> tuple[ModelVersion, str, dict[str, Any]]:
        """The version, a local folder holding its verified files, and the flavor info."""

    @abc.abstractmethod
    def create_signing_key(self, *, project: str, required: bool) -> str: ...

    def close(self) -> None:  # an optional hook, not abstract
        """Release connections."""
