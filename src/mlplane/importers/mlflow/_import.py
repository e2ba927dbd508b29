"""The import use case: MLflow experiments, runs and models into our store, resumably.

Everything is written through a :class:`~mlplane.client.Client`, so the same
import works on the embedded store and against an mlplane server, held to
the same permission checks and audit.

Resuming rests on tags. Every imported experiment, run and model version
carries ``mlplane.import.source_id`` (the MLflow id) and a run gets
``mlplane.import.done`` once everything of it is in: a later import skips
done runs, and purges and redoes a run that an interruption left half
written. Experiments are matched by name within the project; model versions
by their source id tag. A run is written in a fixed order (params and tags,
metrics in large batches, inputs, artifacts, status, done mark) and deleted
last when it was deleted in MLflow, since a deleted run takes no writes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mlplane.client import Client
from mlplane.errors import InvalidInput, MlplaneError
from mlplane.importers.mlflow._entities import SrcExperiment, SrcRun
from mlplane.importers.mlflow._registry import ModelImport
from mlplane.importers.mlflow._report import ImportReport
from mlplane.importers.mlflow._source import MlflowSource
from mlplane.importers.mlflow._tags import TAG_DONE, TAG_SOURCE, TAG_SOURCE_ID
from mlplane.projects import DEFAULT_PROJECT
from mlplane.tracking import validation
from mlplane.tracking.entities import MetricColumns, RunInput, ViewType

BATCH_POINTS = 50_000
_TERMINAL = ("FINISHED", "FAILED", "KILLED")

Hook = Callable[[str, str], None]
"""Called as ``hook(event, mlflow_id)`` at each checkpoint: ``run.started``,
``run.metrics``, ``run`` (done), ``model_version``, ``skipped``. The CLI moves
its progress bar on it; tests interrupt the import from it."""


@dataclass(frozen=True, slots=True)
class _Plan:
    experiment: SrcExperiment
    runs: list[SrcRun]


class MlflowImport:
    """One import of an MLflow store into ``client``'s store.

    Args:
        client: Where to write (embedded or a server).
        source: Where to read.
        project: Our project that receives experiments and models.
        experiments: Only these MLflow experiment names (and model versions logged by
            their runs); all when empty.
        dry_run: Read and compare, write nothing; the report says what would be imported.
        hook: See :data:`Hook`.
        on_total: Called once with the number of runs and model versions to go through.
    """

    def __init__(
        self,
        client: Client,
        source: MlflowSource,
        *,
        project: str = DEFAULT_PROJECT,
        experiments: Iterable[str] = (),
        dry_run: bool = False,
        hook: Hook | None = None,
        on_total: Callable[[int], None] | None = None,
        batch_points: int = BATCH_POINTS,
    ) -> None:
        self.client = client
        self.source = source
        self.project = project
        self.only = list(experiments)
        self.dry_run = dry_run
        self.hook = hook or (lambda event, item: None)
        self.on_total = on_total or (lambda n: None)
        self.batch_points = batch_points
        self.report = ImportReport(source=source.label, project=project, dry_run=dry_run)
        self.run_ids: dict[str, str] = {}
        """MLflow run id → ours, for parents and model versions."""

    def run(self) -> ImportReport:
        plans = [_Plan(e, list(self.source.runs(e.experiment_id))) for e in self._experiments()]
        wanted = {r.run_id for p in plans for r in p.runs} if self.only else None
        models = ModelImport(self, wanted)
        models.plan()
        self.on_total(sum(len(p.runs) for p in plans) + models.planned)
        for plan in plans:
            self._experiment(plan)
        models.run()
        return self.report

    # -- experiments -------------------------------------------------------------------------

    def _experiments(self) -> list[SrcExperiment]:
        found = self.source.experiments()
        if not self.only:
            return found
        by_name = {e.name: e for e in found}
        missing = [n for n in self.only if n not in by_name]
        if missing:
            known = ", ".join(sorted(by_name)[:30])
            raise InvalidInput(
                f"no MLflow experiment named {', '.join(map(repr, missing))} in "
                f"{self.source.label}; its experiments: {known}"
            )
        return [by_name[n] for n in dict.fromkeys(self.only)]

    def _experiment(self, plan: _Plan) -> None:
        exp = plan.experiment
        ours = self.client.get_experiment_by_name(exp.name, project=self.project)
        matched = ours is not None and ours.tags.get(TAG_SOURCE_ID) == exp.experiment_id
        self.report.add("experiments", "skipped" if matched else "imported")
        done = self._imported_runs(ours.experiment_id) if ours is not None else {}
        todo = [r for r in plan.runs if done.get(r.run_id, (None, False))[1] is False]
        for r in plan.runs:
            if r.run_id in done and done[r.run_id][1]:
                self.run_ids[r.run_id] = done[r.run_id][0]
                self.report.add("runs", "skipped")
                self.hook("skipped", r.run_id)
        if self.dry_run:
            self.report.add("runs", "imported", len(todo))
            for r in todo:
                self.hook("run", r.run_id)
            return
        tags = self._valid("tags", exp.name, exp.tags, validation.tag_value)
        tags.update({TAG_SOURCE_ID: exp.experiment_id, TAG_SOURCE: self.source.label})
        if ours is None:
            eid = self.client.create_experiment(exp.name, project=self.project, tags=tags)
            was_deleted = False
        else:
            eid = ours.experiment_id
            was_deleted = ours.lifecycle_stage == "deleted"
            for k, v in tags.items():
                if ours.tags.get(k) != v:
                    self.client.set_experiment_tag(eid, k, v)
        if todo and was_deleted:
            self.client.restore_experiment(eid)  # a deleted experiment takes no new runs
        for r in _parents_first(todo):
            partial = done.get(r.run_id)
            if partial is not None:
                self.client.purge_run(partial[0])  # half written by an interrupted import
            try:
                self._run(eid, r)
            except MlplaneError as exc:
                self.report.fail("runs", r.run_id, str(exc))
        if (exp.deleted or was_deleted) and (todo or not was_deleted):
            self.client.delete_experiment(eid)

    def _imported_runs(self, experiment_id: str) -> dict[str, tuple[str, bool]]:
        """MLflow run id → (our run id, completely imported) for runs already here."""
        out: dict[str, tuple[str, bool]] = {}
        for run in self.client.search_all_runs(
            [experiment_id], view_type=ViewType.ALL, max_results=5000
        ):
            source_id = run.data.tags.get(TAG_SOURCE_ID)
            if source_id:
                out[source_id] = (run.info.run_id, run.data.tags.get(TAG_DONE) == "true")
        return out

    # -- runs --------------------------------------------------------------------------------

    def _run(self, experiment_id: str, r: SrcRun) -> None:
        params = self._valid("params", r.run_id, r.params, validation.param_value)
        tags = self._valid("tags", r.run_id, r.tags, validation.tag_value)
        tags.update({TAG_SOURCE_ID: r.run_id, TAG_SOURCE: self.source.label})
        parent = self.run_ids.get(r.parent_run_id or "")
        run = self.client.create_run(
            experiment_id,
            run_name=r.name or None,
            start_time=r.start_time,
            tags=tags,
            parent_run_id=parent,
        )
        run_id = run.info.run_id
        try:
            self._fill(run_id, r, params, len(tags))
        except MlplaneError:
            self.client.purge_run(run_id)  # no half-imported run stays behind
            raise
        self.run_ids[r.run_id] = run_id
        self.report.add("runs", "imported")
        self.hook("run", r.run_id)

    def _fill(self, run_id: str, r: SrcRun, params: dict[str, str], tag_count: int) -> None:
        self.hook("run.started", r.run_id)
        if params:
            self.client.log_batch(run_id, params=params)
        self.report.add("params", "imported", len(params))
        self.report.add("tags", "imported", tag_count)
        self._metrics(run_id, r)
        self.hook("run.metrics", r.run_id)
        self._inputs(run_id, r)
        self._artifacts(run_id, r)
        if r.status in _TERMINAL:
            end = r.end_time if r.end_time is not None else r.start_time
            self.client.update_run(run_id, status=r.status, end_time=end)
        elif r.status != "RUNNING":
            self.client.update_run(run_id, status=r.status)
        self.client.log_batch(run_id, tags={TAG_DONE: "true"})
        if r.deleted:
            self.client.delete_run(run_id)

    def _valid(
        self, kind: str, owner: str, values: dict[str, str], check: Callable[[str, object], str]
    ) -> dict[str, str]:
        """The items our rules accept; each one refused is a failure in the report."""
        out = {}
        for k, v in values.items():
            try:
                out[validation.key(kind[:-1], k)] = check(k, v)
            except MlplaneError as exc:
                self.report.fail(kind, f"{owner}/{k}", str(exc))
        return out

    def _metrics(self, run_id: str, r: SrcRun) -> None:
        points = self.source.metric_history(r)
        for start in range(0, len(points), self.batch_points):
            chunk = points[start : start + self.batch_points]
            keys, values, stamps, steps = zip(*chunk, strict=True)
            try:
                self.client.log_batch(
                    run_id,
                    metrics=MetricColumns(list(keys), list(values), list(stamps), list(steps)),
                )
            except MlplaneError as exc:
                self.report.fail("metric_points", r.run_id, f"{len(chunk)} points: {exc}")
                continue
            self.report.add("metric_points", "imported", len(chunk))

    def _inputs(self, run_id: str, r: SrcRun) -> None:
        inputs = []
        for inp in r.inputs:
            source = f"mlflow:{inp.source_type}:{inp.source}" if inp.source_type else inp.source
            inputs.append(
                RunInput(
                    kind="dataset",
                    name=inp.name[:500],
                    digest=inp.digest[:100],
                    source=source[:1000],
                    context=inp.context[:100],
                )
            )
        if inputs:
            self.client.log_inputs(run_id, inputs)
            self.report.add("inputs", "imported", len(inputs))

    def _artifacts(self, run_id: str, r: SrcRun) -> None:
        if not r.artifact_uri:
            return
        try:
            uri = self.source.resolve(r.artifact_uri)
            files = self.source.list_files(uri)
        except MlplaneError as exc:
            self.report.fail("artifacts", f"{r.run_id}/*", str(exc))
            return
        with tempfile.TemporaryDirectory(prefix="mlplane-import-") as tmp:
            for i, f in enumerate(files):
                local = Path(tmp) / str(i)
                try:
                    self.source.download(uri, f.path, local)
                    self.client.transport.log_artifact(run_id, f.path, local)
                except (MlplaneError, OSError) as exc:
                    self.report.fail("artifacts", f"{r.run_id}/{f.path}", str(exc))
                    continue
                finally:
                    local.unlink(missing_ok=True)
                self.report.add("artifacts", "imported")


def _parents_first(runs: list[SrcRun]) -> list[SrcRun]:
    """Runs ordered so that a parent run is created before its children."""
    by_id = {r.run_id: r for r in runs}
    out: list[SrcRun] = []
    placed: set[str] = set()

    def place(r: SrcRun, seen: frozenset[str]) -> None:
        if r.run_id in placed:
            return
        parent = by_id.get(r.parent_run_id or "")
        if parent is not None and parent.run_id not in seen:
            place(parent, seen | {r.run_id})
        placed.add(r.run_id)
        out.append(r)

    for r in runs:
        place(r, frozenset())
    return out
