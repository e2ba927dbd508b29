"""Experiment use cases of the tracking service."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import delete, select, update

from mlplane import projects
from mlplane.db.engine import now_ms
from mlplane.errors import AlreadyExists, Conflict, NotFound
from mlplane.projects import service as project_rows
from mlplane.projects.tables import ProjectRow
from mlplane.security import Permission, Principal, allowed
from mlplane.tracking import _rows, experiment_search
from mlplane.tracking import validation as check
from mlplane.tracking._base import ServiceBase, decode_page_token, encode_page_token, stage_filter
from mlplane.tracking.entities import (
    Experiment,
    ExperimentPage,
    LifecycleStage,
    ViewType,
)
from mlplane.tracking.tables import (
    ExperimentRow,
    ExperimentTagRow,
    RunRow,
)


class ExperimentsMixin(ServiceBase):
    def create_experiment(
        self,
        p: Principal,
        name: str,
        *,
        project: str = projects.DEFAULT_PROJECT,
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
    ) -> str:
        """Create an experiment; returns its id. Names are unique within a project."""
        check.name("experiment", name, check.MAX_EXPERIMENT_NAME_LENGTH)
        clean_tags = self._strings("tag", tags)
        with self._guard.unit(write=True) as s:
            proj = project_rows.get_or_create(s, project)
            self._require(p, Permission.WRITE, proj, "experiment.create", f"experiment/{name}")
            if (
                s.scalar(
                    select(ExperimentRow.id).where(
                        ExperimentRow.project_id == proj.id, ExperimentRow.name == name
                    )
                )
                is not None
            ):
                raise AlreadyExists(
                    f"an experiment named {name!r} exists already in project {project!r}"
                )
            now = now_ms()
            row = ExperimentRow(
                project_id=proj.id,
                name=name,
                description=description,
                artifact_location=artifact_location or "",
                lifecycle_stage=LifecycleStage.ACTIVE,
                creation_time=now,
                last_update_time=now,
            )
            s.add(row)
            s.flush()
            if not artifact_location:
                row.artifact_location = f"mlplane-artifacts:/{row.id}"
            s.add_all(
                ExperimentTagRow(experiment_id=row.id, key=k, value=v)
                for k, v in clean_tags.items()
            )
            self._guard.audit(
                s, p, "experiment.create", f"experiment/{row.id}", proj.id, details={"name": name}
            )
            return str(row.id)

    def get_experiment(self, p: Principal, experiment_id: str) -> Experiment:
        eid = check.experiment_id(experiment_id)
        with self._guard.unit(write=False) as s:
            row, proj = self._experiment_scope(s, eid)
            self._require(p, Permission.READ, proj, "experiment.read", f"experiment/{eid}")
            return self._experiment_entity(s, row, proj.name)

    def get_experiment_by_name(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> Experiment:
        with self._guard.unit(write=False) as s:
            found = s.execute(
                select(ExperimentRow, ProjectRow)
                .join(ProjectRow, ProjectRow.id == ExperimentRow.project_id)
                .where(ProjectRow.name == project, ExperimentRow.name == name)
            ).first()
            if found is None:
                raise NotFound(f"no experiment named {name!r} in project {project!r}")
            row, proj = found
            self._require(p, Permission.READ, proj, "experiment.read", f"experiment/{row.id}")
            return self._experiment_entity(s, row, proj.name)

    def search_experiments(
        self,
        p: Principal,
        *,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        name_like: str | None = None,
        project: str | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
    ) -> ExperimentPage:
        """Experiments the caller may read, newest first unless ``order_by`` says otherwise.

        ``filter_string`` and ``order_by`` take MLflow's experiment-search syntax
        (:mod:`mlplane.tracking.experiment_search`), e.g. ``"name LIKE 'fraud-%' AND
        tags.team = 'risk'"`` and ``["last_update_time DESC"]``.
        """
        check.max_results(max_results)
        offset = decode_page_token(page_token)
        clauses = experiment_search.parse_filter(filter_string)
        with self._guard.unit(write=False) as s:
            q = select(ExperimentRow, ProjectRow.name).join(
                ProjectRow, ProjectRow.id == ExperimentRow.project_id
            )
            q = stage_filter(q, ExperimentRow.lifecycle_stage, ViewType(view_type))
            if name_like:
                q = q.where(ExperimentRow.name.like(name_like))
            if project:
                q = q.where(ProjectRow.name == project)
            q = q.order_by(ExperimentRow.creation_time.desc(), ExperimentRow.id.desc())
            rows = [(row, proj) for row, proj in s.execute(q) if allowed(p, Permission.READ, proj)]
            if not clauses and not order_by:
                page = rows[offset : offset + max_results]
                tags = _rows.experiment_tags(s, [r.id for r, _ in page])
                exps = [_rows.experiment(r, proj, tags.get(r.id, {})) for r, proj in page]
                more = offset + max_results < len(rows)
            else:
                # Filtering and ordering need every candidate's tags before the page is cut.
                tags = _rows.experiment_tags(s, [r.id for r, _ in rows])
                found = [_rows.experiment(r, proj, tags.get(r.id, {})) for r, proj in rows]
                found = [e for e in found if experiment_search.matches(e, clauses)]
                found = experiment_search.sort(found, order_by)
                exps = found[offset : offset + max_results]
                more = offset + max_results < len(found)
            return ExperimentPage(exps, encode_page_token(offset + max_results) if more else None)

    def update_experiment(
        self,
        p: Principal,
        experiment_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        eid = check.experiment_id(experiment_id)
        with self._guard.unit(write=True) as s:
            row, proj = self._experiment_scope(s, eid)
            self._require(p, Permission.WRITE, proj, "experiment.update", f"experiment/{eid}")
            if name is not None and name != row.name:
                check.name("experiment", name, check.MAX_EXPERIMENT_NAME_LENGTH)
                if (
                    s.scalar(
                        select(ExperimentRow.id).where(
                            ExperimentRow.project_id == proj.id, ExperimentRow.name == name
                        )
                    )
                    is not None
                ):
                    raise AlreadyExists(f"an experiment named {name!r} exists already")
                row.name = name
            if description is not None:
                row.description = description
            row.last_update_time = now_ms()
            self._guard.audit(
                s,
                p,
                "experiment.update",
                f"experiment/{eid}",
                proj.id,
                details={"name": name, "description": description is not None},
            )

    def set_experiment_tag(self, p: Principal, experiment_id: str, key: str, value: str) -> None:
        eid = check.experiment_id(experiment_id)
        tags = self._strings("tag", {key: value})
        with self._guard.unit(write=True) as s:
            row, proj = self._experiment_scope(s, eid)
            self._require(p, Permission.WRITE, proj, "experiment.update", f"experiment/{eid}")
            s.merge(ExperimentTagRow(experiment_id=eid, key=key, value=tags[key]))
            row.last_update_time = now_ms()

    def delete_experiment_tag(self, p: Principal, experiment_id: str, key: str) -> None:
        eid = check.experiment_id(experiment_id)
        with self._guard.unit(write=True) as s:
            row, proj = self._experiment_scope(s, eid)
            self._require(p, Permission.WRITE, proj, "experiment.update", f"experiment/{eid}")
            gone = s.execute(
                delete(ExperimentTagRow).where(
                    ExperimentTagRow.experiment_id == eid, ExperimentTagRow.key == key
                )
            )
            if gone.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"experiment {eid} has no tag {key!r}")
            row.last_update_time = now_ms()

    def delete_experiment(self, p: Principal, experiment_id: str) -> None:
        """Soft-delete an experiment and its runs (restorable)."""
        self._set_experiment_stage(p, experiment_id, LifecycleStage.DELETED)

    def restore_experiment(self, p: Principal, experiment_id: str) -> None:
        self._set_experiment_stage(p, experiment_id, LifecycleStage.ACTIVE)

    def _set_experiment_stage(
        self, p: Principal, experiment_id: str, stage: LifecycleStage
    ) -> None:
        eid = check.experiment_id(experiment_id)
        action = "experiment.delete" if stage == LifecycleStage.DELETED else "experiment.restore"
        with self._guard.unit(write=True) as s:
            row, proj = self._experiment_scope(s, eid)
            self._require(p, Permission.WRITE, proj, action, f"experiment/{eid}")
            if row.lifecycle_stage == stage:
                raise Conflict(f"experiment {eid} is already {stage.value}")
            now = now_ms()
            row.lifecycle_stage = stage
            row.last_update_time = now
            s.execute(
                update(RunRow)
                .where(RunRow.experiment_id == eid)
                .values(
                    lifecycle_stage=stage,
                    deleted_time=now if stage == LifecycleStage.DELETED else None,
                )
            )
            self._guard.audit(s, p, action, f"experiment/{eid}", proj.id)
