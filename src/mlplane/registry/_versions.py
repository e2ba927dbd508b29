"""Reading versions: list, get, tags, model-card fields, lineage, load."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from mlplane import projects
from mlplane.db.engine import now_ms
from mlplane.errors import InvalidInput
from mlplane.registry import uri
from mlplane.registry._rows import version_entity
from mlplane.registry.entities import ModelLineage, ModelVersion
from mlplane.registry.scan import ScanReport
from mlplane.registry.tables import ModelTagRow, ModelVersionRow
from mlplane.security import Permission, Principal

CARD_FIELDS = ("purpose", "intended_use", "limitations", "ethical_considerations", "owner_contact")
"""The editable model-card fields; everything else in a card is generated."""


class VersionsMixin:
    _guard: Any
    _model: Any
    _project: Any
    _version_row: Any
    _run_reader: Any
    fetch: Any

    def get_version(
        self, p: Principal, ref: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> ModelVersion:
        """A version by ``models:/name/3``, ``models:/name@alias``, ``name@3`` or ``name``."""
        name, selector = uri.parse(ref)
        with self._guard.unit(write=False) as s:
            _, model = self._model(s, p, name, project, Permission.READ, "model.read")
            return version_entity(s, model, self._version_row(s, model, selector), project)

    def versions(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> list[ModelVersion]:
        """Every version of a model, newest first."""
        with self._guard.unit(write=False) as s:
            _, model = self._model(s, p, name, project, Permission.READ, "model.read")
            rows = s.scalars(
                select(ModelVersionRow)
                .where(ModelVersionRow.model_id == model.id)
                .order_by(ModelVersionRow.version.desc())
            )
            return [version_entity(s, model, r, project) for r in rows]

    def scan_report(
        self, p: Principal, ref: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> ScanReport:
        """The scan made when the version was registered, every finding included."""
        name, selector = uri.parse(ref)
        with self._guard.unit(write=False) as s:
            _, model = self._model(s, p, name, project, Permission.READ, "model.read")
            return ScanReport.from_json(self._version_row(s, model, selector).scan)

    def versions_by_runs(
        self,
        p: Principal,
        run_ids: Sequence[str],
        *,
        project: str = projects.DEFAULT_PROJECT,
    ) -> list[ModelVersion]:
        """The versions of ``project``'s models registered from any of ``run_ids`` (one
        indexed query), by model name and then version: a run's or a dataset's lineage."""
        from mlplane.errors import NotFound
        from mlplane.registry.tables import ModelRow

        ids = sorted(set(run_ids))
        with self._guard.unit(write=False) as s:
            try:
                proj = self._project(s, p, project, Permission.READ, "model.list", "model/*")
            except NotFound:
                return []
            if not ids:
                return []
            rows = s.execute(
                select(ModelRow, ModelVersionRow)
                .join(ModelVersionRow, ModelVersionRow.model_id == ModelRow.id)
                .where(ModelRow.project_id == proj.id, ModelVersionRow.run_id.in_(ids))
                .order_by(ModelRow.name, ModelVersionRow.version)
            ).all()
            return [version_entity(s, model, row, project) for model, row in rows]

    def set_tag(
        self,
        p: Principal,
        ref: str,
        key: str,
        value: str,
        *,
        project: str = projects.DEFAULT_PROJECT,
    ) -> None:
        if not key or len(key) > 250:
            raise InvalidInput("a tag key is 1 to 250 characters")
        name, selector = uri.parse(ref)
        with self._guard.unit(write=True) as s:
            _, model = self._model(s, p, name, project, Permission.WRITE, "model.tag")
            row = self._version_row(s, model, selector)
            s.merge(ModelTagRow(version_id=row.id, key=key, value=str(value)))
            row.updated_at = now_ms()

    def update_card(
        self,
        p: Principal,
        ref: str,
        fields: Mapping[str, str],
        *,
        project: str = projects.DEFAULT_PROJECT,
    ) -> ModelVersion:
        """Edit the card's human fields (intended use, limitations, …) of a version."""
        unknown = set(fields) - set(CARD_FIELDS)
        if unknown:
            raise InvalidInput(
                f"unknown model-card fields: {', '.join(sorted(unknown))}; "
                f"editable: {', '.join(CARD_FIELDS)}"
            )
        name, selector = uri.parse(ref)
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.WRITE, "model.card")
            row = self._version_row(s, model, selector)
            card = json.loads(row.card)
            card.update({k: str(v) for k, v in fields.items()})
            row.card = json.dumps(card)
            model.updated_at = now_ms()
            self._guard.audit(
                s,
                p,
                "model.card.update",
                f"model/{name}@{row.version}",
                proj.id,
                details={"fields": sorted(fields)},
            )
            s.flush()
            return version_entity(s, model, row, project)

    def lineage(
        self, p: Principal, ref: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> ModelLineage:
        """version → run → params/metrics → dataset versions → code commit."""
        version = self.get_version(p, ref, project=project)
        run = None
        if version.run_id and self._run_reader is not None:
            run = self._run_reader(p, version.run_id)
        tags = run.data.tags if run is not None else {}
        datasets = (
            [f"{i.name}@{i.version}" for i in run.inputs if i.kind == "dataset"]
            if run is not None
            else []
        )
        dirty = tags.get("mlplane.git.dirty")
        return ModelLineage(
            version=version,
            run_id=version.run_id,
            run_name=run.info.run_name if run is not None else None,
            params=dict(run.data.params) if run is not None else dict(version.params),
            metrics=dict(run.data.metrics) if run is not None else dict(version.metrics),
            datasets=datasets,
            git_commit=tags.get("mlplane.git.commit"),
            git_branch=tags.get("mlplane.git.branch"),
            git_dirty=None if dirty is None else dirty == "true",
        )

    def load(self, p: Principal, ref: str, *, project: str = projects.DEFAULT_PROJECT) -> Any:
        """The model, checked and ready: ``.predict(data)`` over pandas, NumPy, Arrow or a
        list of dicts, with its signature enforced."""
        from mlplane.registry.flavors import PyFuncModel, get
        from mlplane.registry.signature import Signature

        version, folder, info = self.fetch(p, ref, project=project)
        flavor = get(version.flavor)
        native = flavor.load(folder / "model", info)
        sig = Signature.from_json(json.dumps(version.signature)) if version.signature else None
        return PyFuncModel(flavor, native, sig)
