"""Changing registered models and versions: create, describe, rename, tag, stage, delete.

These are the use cases MLflow's registry API needs beyond registering and aliasing.
Deletion and MLflow's ``Production`` stage touch what the approval rules guard, so
they are held to the same rules as a protected alias: the approver role, and for
``Production`` a version that passes the promotion policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from mlplane import projects
from mlplane.blobs.shred import shred_chunks
from mlplane.db.engine import now_ms
from mlplane.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from mlplane.registry import integrity, uri
from mlplane.registry import policy as policy_mod
from mlplane.registry._rows import model_entity, version_entity
from mlplane.registry.entities import ModelFile, ModelVersion, RegisteredModel
from mlplane.registry.tables import (
    ModelAliasRow,
    ModelRow,
    ModelTagRow,
    ModelVersionRow,
    RegisteredModelTagRow,
)
from mlplane.security import Permission, Principal

STAGES = ("None", "Staging", "Production", "Archived")
"""MLflow's (deprecated) version stages; ``Production`` is guarded like a protected alias."""
_GUARDED_STAGE = "Production"


def canonical_stage(stage: str) -> str:
    """MLflow's stage spelling for ``stage`` in any case."""
    for known in STAGES:
        if stage.strip().lower() == known.lower():
            return known
    raise InvalidInput(f"invalid stage {stage!r}; the stages are {', '.join(STAGES)}")


def check_tag_key(key: str) -> str:
    if not key or len(key) > 250:
        raise InvalidInput("a tag key is 1 to 250 characters")
    return key


class ManageMixin:
    _guard: Any
    _model: Any
    _project: Any
    _version_row: Any
    _materialize: Any
    _verify_signature: Any
    _refused_load: Any
    chunk_users: Any = None
    """See ``DataService.chunk_users``: every chunk a dataset or model version lists."""

    # -- registered models -------------------------------------------------------------------

    def create_model(
        self,
        p: Principal,
        name: str,
        *,
        description: str = "",
        tags: dict[str, str] | None = None,
        project: str = projects.DEFAULT_PROJECT,
    ) -> RegisteredModel:
        """A registered model with no versions yet.

        Raises:
            AlreadyExists: the project has a model of that name.
        """
        uri.check_name(name)
        for key in tags or {}:
            check_tag_key(key)
        now = now_ms()
        with self._guard.unit(write=True) as s:
            proj = self._project(s, p, project, Permission.WRITE, "model.create", f"model/{name}")
            if s.scalar(
                select(ModelRow.id).where(ModelRow.project_id == proj.id, ModelRow.name == name)
            ):
                raise AlreadyExists(f"registered model {name!r} already exists")
            model = ModelRow(
                project_id=proj.id,
                name=name,
                description=description or "",
                owner=p.name,
                created_at=now,
                updated_at=now,
                protected_aliases='["champion"]',
                policy="{}",
                version_seq=0,
            )
            s.add(model)
            s.flush()
            s.add_all(
                RegisteredModelTagRow(model_id=model.id, key=k, value=str(v))
                for k, v in (tags or {}).items()
            )
            self._guard.audit(s, p, "model.create", f"model/{name}", proj.id)
            s.flush()
            return model_entity(s, model, project)

    def update_model(
        self,
        p: Principal,
        name: str,
        *,
        description: str,
        project: str = projects.DEFAULT_PROJECT,
    ) -> RegisteredModel:
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.WRITE, "model.update")
            model.description = description
            model.updated_at = now_ms()
            self._guard.audit(s, p, "model.update", f"model/{name}", proj.id)
            s.flush()
            return model_entity(s, model, project)

    def rename_model(
        self, p: Principal, name: str, new_name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> RegisteredModel:
        """Rename a model; its versions, aliases and policy go with it.

        Raises:
            AlreadyExists: the project has a model called ``new_name``.
        """
        uri.check_name(new_name)
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.WRITE, "model.rename")
            taken = s.scalar(
                select(ModelRow.id).where(ModelRow.project_id == proj.id, ModelRow.name == new_name)
            )
            if taken and taken != model.id:
                raise AlreadyExists(f"registered model {new_name!r} already exists")
            model.name = new_name
            model.updated_at = now_ms()
            self._guard.audit(
                s, p, "model.rename", f"model/{new_name}", proj.id, details={"from": name}
            )
            s.flush()
            return model_entity(s, model, project)

    def delete_model(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> None:
        """Delete a model with every version, alias and tag (their chunks go at gc).
        A model a protected alias points into needs the approver role."""
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.WRITE, "model.delete")
            held = s.scalars(select(ModelAliasRow.alias).where(ModelAliasRow.model_id == model.id))
            self._require_approver_if_protected(s, p, proj.id, project, model, set(held))
            version_ids = select(ModelVersionRow.id).where(ModelVersionRow.model_id == model.id)
            s.execute(delete(ModelTagRow).where(ModelTagRow.version_id.in_(version_ids)))
            s.execute(delete(ModelVersionRow).where(ModelVersionRow.model_id == model.id))
            s.execute(delete(ModelAliasRow).where(ModelAliasRow.model_id == model.id))
            s.execute(
                delete(RegisteredModelTagRow).where(RegisteredModelTagRow.model_id == model.id)
            )
            s.delete(model)
            self._guard.audit(s, p, "model.delete", f"model/{name}", proj.id)

    def set_model_tag(
        self,
        p: Principal,
        name: str,
        key: str,
        value: str,
        *,
        project: str = projects.DEFAULT_PROJECT,
    ) -> None:
        check_tag_key(key)
        with self._guard.unit(write=True) as s:
            _, model = self._model(s, p, name, project, Permission.WRITE, "model.tag")
            s.merge(RegisteredModelTagRow(model_id=model.id, key=key, value=str(value)))
            model.updated_at = now_ms()

    def delete_model_tag(
        self, p: Principal, name: str, key: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> None:
        with self._guard.unit(write=True) as s:
            _, model = self._model(s, p, name, project, Permission.WRITE, "model.tag")
            row = s.get(RegisteredModelTagRow, (model.id, key))
            if row is None:
                raise NotFound(f"registered model {name!r} has no tag {key!r}")
            s.delete(row)
            model.updated_at = now_ms()

    # -- versions ----------------------------------------------------------------------------

    def update_version(
        self,
        p: Principal,
        ref: str,
        *,
        description: str,
        project: str = projects.DEFAULT_PROJECT,
    ) -> ModelVersion:
        """Change a version's description (its files never change)."""
        name, selector = uri.parse(ref)
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.WRITE, "model.update")
            row = self._version_row(s, model, selector)
            row.description = description
            row.updated_at = now_ms()
            self._guard.audit(s, p, "model.version.update", f"model/{name}@{row.version}", proj.id)
            s.flush()
            return version_entity(s, model, row, project)

    def delete_version(
        self,
        p: Principal,
        ref: str,
        *,
        project: str = projects.DEFAULT_PROJECT,
        shred: bool = False,
    ) -> int:
        """Delete a version and the aliases on it; its number is never given out again.
        A version a protected alias points at needs the approver role. Returns how many
        chunks were shredded: with ``shred`` (the project admin role), the chunks of its
        files that no other model or dataset version lists are destroyed at once (see
        :func:`~mlplane.blobs.shred.shred_chunks`); without it they wait for gc."""
        if shred and self.chunk_users is None:
            raise InvalidInput("shredding needs the services wired together (chunk_users)")
        name, selector = uri.parse(ref)
        action = "model.version.shred" if shred else "model.version.delete"
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.WRITE, "model.delete")
            row = self._version_row(s, model, selector)
            resource = f"model/{name}@{row.version}"
            if shred:
                self._guard.require(
                    p,
                    Permission.ADMIN,
                    project=project,
                    project_id=proj.id,
                    action=action,
                    resource=resource,
                )
            on_it = ModelAliasRow.model_id == model.id, ModelAliasRow.version == row.version
            held = set(s.scalars(select(ModelAliasRow.alias).where(*on_it)))
            self._require_approver_if_protected(s, p, proj.id, project, model, held)
            mine = {d for f in json.loads(row.files) for d, _ in f["chunks"]}
            s.execute(delete(ModelAliasRow).where(*on_it))
            s.execute(delete(ModelTagRow).where(ModelTagRow.version_id == row.id))
            s.delete(row)
            model.updated_at = now_ms()
            s.flush()
            shredded = 0
            if shred and self.chunk_users is not None:
                shredded = shred_chunks(s, mine - self.chunk_users(s))
            self._guard.audit(
                s, p, action, resource, proj.id, details={"shredded_chunks": shredded}
            )
        return shredded

    def referenced_chunks(self, *, session: Any) -> set[str]:
        """Digests of every chunk a model version's files list."""
        out: set[str] = set()
        for (files,) in session.execute(
            select(ModelVersionRow.files).execution_options(yield_per=500)
        ):
            out.update(d for f in json.loads(files) for d, _ in f["chunks"])
        return out

    def delete_tag(
        self, p: Principal, ref: str, key: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> None:
        name, selector = uri.parse(ref)
        with self._guard.unit(write=True) as s:
            _, model = self._model(s, p, name, project, Permission.WRITE, "model.tag")
            row = self._version_row(s, model, selector)
            tag = s.get(ModelTagRow, (row.id, key))
            if tag is None:
                raise NotFound(f"{name}@{row.version} has no tag {key!r}")
            s.delete(tag)
            row.updated_at = now_ms()

    def set_stage(
        self,
        p: Principal,
        ref: str,
        stage: str,
        *,
        archive_existing: bool = False,
        project: str = projects.DEFAULT_PROJECT,
    ) -> ModelVersion:
        """Move a version to an MLflow stage; ``archive_existing`` archives the other versions
        in that stage. ``Production`` needs the approver role and a version that passes the
        promotion policy (compared with the newest version already in Production).

        Raises:
            Conflict: the policy refuses the version (the message names the rules).
        """
        target = canonical_stage(stage)
        if archive_existing and target not in ("Staging", "Production"):
            raise InvalidInput(
                f"archive_existing_versions applies to Staging and Production, not {target}"
            )
        name, selector = uri.parse(ref)
        refused: tuple[int, int, list[str]] | None = None
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.WRITE, "model.stage")
            row = self._version_row(s, model, selector)
            others = list(
                s.scalars(
                    select(ModelVersionRow)
                    .where(
                        ModelVersionRow.model_id == model.id,
                        ModelVersionRow.stage == target,
                        ModelVersionRow.id != row.id,
                    )
                    .order_by(ModelVersionRow.version.desc())
                )
            )
            if target == _GUARDED_STAGE:
                self._guard.require(
                    p,
                    Permission.APPROVE,
                    project=project,
                    project_id=proj.id,
                    action="model.stage.production",
                    resource=f"model/{name}@{row.version}",
                )
                candidate = version_entity(s, model, row, project)
                current = version_entity(s, model, others[0], project) if others else None
                problems = policy_mod.check(
                    policy_mod.parse_policy(model.policy), candidate, current
                )
                if problems:
                    refused = (proj.id, row.version, problems)
            if refused is None:
                now = now_ms()
                row.stage, row.updated_at = target, now
                for other in others if archive_existing else []:
                    other.stage, other.updated_at = "Archived", now
                model.updated_at = now
                self._guard.audit(
                    s,
                    p,
                    "model.stage.set",
                    f"model/{name}@{row.version}",
                    proj.id,
                    details={"stage": target, "archived": [o.version for o in others]}
                    if archive_existing
                    else {"stage": target},
                )
                s.flush()
                return version_entity(s, model, row, project)
        project_id, number, problems = refused
        self._guard.record(
            p,
            "model.stage.refused",
            f"model/{name}@{number}",
            project_id,
            details={"stage": target, "problems": problems},
        )
        raise Conflict(f"{name}@{number} may not move to {target}: " + "; ".join(problems))

    def open_file(
        self, p: Principal, ref: str, path: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> tuple[ModelFile, Path]:
        """One file of a version from the local copy, checked before it is handed out: its
        SHA-256 against the registered one, and the manifest signature when the project has
        a key. Cheaper than :meth:`fetch` for a client that downloads file by file; a
        mismatch raises ``TamperedArtifact`` and is audited."""
        name, selector = uri.parse(ref)
        with self._guard.unit(write=False) as s:
            proj, model = self._model(s, p, name, project, Permission.READ, "model.read")
            row = self._version_row(s, model, selector)
            version = version_entity(s, model, row, project)
            stored = json.loads(row.files)
            signature, digest, project_id = row.manifest_signature, row.manifest_sha256, proj.id
        wanted = next((f for f in version.files if f.path == path), None)
        if wanted is None:
            raise NotFound(f"{version.ref} has no file {path!r}")
        folder = self._materialize(digest, stored)
        try:
            integrity.verify_files(folder, [wanted], version.ref)
            self._verify_signature(project_id, version, signature)
        except Exception as exc:
            self._refused_load(p, version, project_id, exc)
            raise
        return wanted, folder / wanted.path

    # -- helpers -----------------------------------------------------------------------------

    def _require_approver_if_protected(
        self, s: Any, p: Principal, project_id: int, project: str, model: ModelRow, held: set[str]
    ) -> None:
        guarded = held & set(json.loads(model.protected_aliases))
        if guarded:
            self._guard.require(
                p,
                Permission.APPROVE,
                project=project,
                project_id=project_id,
                action="model.alias.protected",
                resource=f"model/{model.name}@{','.join(sorted(guarded))}",
            )
