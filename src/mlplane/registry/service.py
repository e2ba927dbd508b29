"""Registry use cases: register, read, alias with approval, load with integrity checks.

Registration saves the model in its flavor's safe format (pickle only as a
fallback), infers the signature from the input example, converts to ONNX
with a parity check where a converter exists, captures the environment, and
scans every file before anything is stored: an ``unsafe`` verdict refuses the
version, an ``unknown`` one needs a project admin's audited override. Files
are stored as encrypted, de-duplicated chunks; their SHA-256 digests, and an
Ed25519 signature when the project has a key, are checked on every load.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mlplane import projects
from mlplane.db import numbered
from mlplane.db.engine import Database, now_ms
from mlplane.errors import Conflict, NotFound, UnsafeArtifact
from mlplane.projects import service as project_rows
from mlplane.projects.tables import ProjectRow
from mlplane.registry import integrity, uri
from mlplane.registry import policy as policy_mod
from mlplane.registry._manage import ManageMixin
from mlplane.registry._mlflow import MlflowFolderMixin
from mlplane.registry._rows import model_entity, version_entity
from mlplane.registry._versions import VersionsMixin
from mlplane.registry.entities import ModelFile, ModelVersion, RegisteredModel
from mlplane.registry.tables import ModelAliasRow, ModelRow, ModelTagRow, ModelVersionRow
from mlplane.security import Guard, Permission, Principal
from mlplane.security.keys import KeyRing


@dataclass(frozen=True, slots=True)
class _Key:
    key_id: str
    public_key: bytes
    wrapped_private: bytes
    key_version: int
    required: bool


class RegistryService(VersionsMixin, ManageMixin, MlflowFolderMixin):
    """Registered models over the metadata database and the chunk store."""

    def __init__(
        self,
        db: Database,
        chunks: Callable[[], Any],
        guard: Guard,
        keys: Callable[[], KeyRing],
        *,
        cache_dir: Path,
        run_reader: Callable[[Principal, str], Any] | None = None,
    ) -> None:
        self._db = db
        self._chunks = chunks
        self._guard = guard
        self._keys = keys
        self._cache = cache_dir
        self._run_reader = run_reader

    # -- helpers -----------------------------------------------------------------------------

    def _project(
        self, s, p: Principal, project: str, perm: Permission, action: str, res: str
    ) -> ProjectRow:  # type: ignore[no-untyped-def]
        return project_rows.guarded(
            s,
            self._guard,
            p,
            project,
            perm,
            action=action,
            resource=res,
            create=perm in (Permission.WRITE, Permission.ADMIN, Permission.APPROVE),
            holds="models yet",
        )

    def _model(
        self, s, p: Principal, name: str, project: str, perm: Permission, action: str
    ) -> tuple[ProjectRow, ModelRow]:  # type: ignore[no-untyped-def]
        try:
            proj = self._project(s, p, project, perm, action, f"model/{name}")
        except NotFound:
            raise NotFound(f"no model named {name!r} in project {project!r}") from None
        row = s.scalar(
            select(ModelRow).where(ModelRow.project_id == proj.id, ModelRow.name == name)
        )
        if row is None:
            known = sorted(s.scalars(select(ModelRow.name).where(ModelRow.project_id == proj.id)))
            raise NotFound(
                f"no model named {name!r} in project {project!r}"
                + (f"; models: {', '.join(known[:20])}" if known else "")
            )
        return proj, row

    def _version_row(self, s, model: ModelRow, selector: str) -> ModelVersionRow:  # type: ignore[no-untyped-def]
        return numbered.resolve(  # type: ignore[no-any-return]
            s,
            selector,
            label=model.name,
            row=ModelVersionRow,
            owner=ModelVersionRow.model_id,
            number=ModelVersionRow.version,
            owner_id=model.id,
            pointer_owner=ModelAliasRow.model_id,
            pointer_name=ModelAliasRow.alias,
            pointer_number=ModelAliasRow.version,
            pointers_are="aliases",
        )

    # -- registering -------------------------------------------------------------------------

    def register(
        self,
        p: Principal,
        name: str,
        model: Any,
        *,
        input_example: Any = None,
        sensitive: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> ModelVersion:
        """Register a Python model object as the next version of ``name``: saved by its
        flavor, then as :meth:`register_folder`. Keywords are those of ``register_folder``;
        ``sensitive`` names signature columns to mark sensitive.

        Raises:
            InvalidInput: no flavor understands the object (the message lists them).
        """
        from mlplane.registry._build import write_folder  # ML libraries load on first use

        uri.check_name(name)
        with tempfile.TemporaryDirectory(prefix="mlplane-model-") as tmp:
            folder = Path(tmp) / "model"
            write_folder(model, folder, input_example, sensitive=sensitive)
            return self.register_folder(p, name, folder, **kwargs)

    def register_folder(
        self,
        p: Principal,
        name: str,
        folder: Path,
        *,
        project: str = projects.DEFAULT_PROJECT,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        allow_unknown: bool = False,
        source: str | None = None,
        logged_model_id: str | None = None,
    ) -> ModelVersion:
        """Register a version folder (written by the SDK, here or on a client).

        Every file is scanned here, whatever the folder claims: an ``unsafe`` verdict
        refuses the version; an ``unknown`` one needs ``allow_unknown`` from a project
        admin (audited). Files are hashed, the manifest signed when the project has a
        key, and the files stored encrypted before the version row is written.

        ``source`` and ``logged_model_id`` say where the files were copied from (the MLflow
        API's source URI and MLflow 3 logged model), kept with the version.

        Raises:
            UnsafeArtifact: the scan found code execution, or could not tell.
        """
        from mlplane.registry._build import read_folder

        uri.check_name(name)
        with self._guard.unit(write=False) as s:
            row = project_rows.find(s, project)
            self._guard.require(
                p,
                Permission.ADMIN if allow_unknown else Permission.WRITE,
                project=project,
                project_id=row.id if row else None,
                action="model.register",
                resource=f"model/{name}",
            )
        run_metrics, run_params = self._run_data(p, run_id)
        all_metrics = {**run_metrics, **{k: float(v) for k, v in (metrics or {}).items()}}
        all_params = {**run_params, **{k: str(v) for k, v in (params or {}).items()}}
        built = read_folder(folder)
        verdict = built.scan.verdict
        if verdict == "unsafe" or (verdict == "unknown" and not allow_unknown):
            self._refuse(p, project, name, built.scan.summary(), verdict)
        digest = integrity.manifest_digest(built.files, built.flavor, built.info)
        signed_by, signature = self._sign(project, digest)
        stored = self._store(folder, built.files)
        return self._record(
            p,
            project,
            name,
            built,
            stored,
            digest=digest,
            signed_by=signed_by,
            manifest_signature=signature,
            metrics=all_metrics,
            params=all_params,
            run_id=run_id,
            description=description,
            tags=dict(tags or {}),
            override=p.name if verdict == "unknown" else None,
            source=source,
            logged_model_id=logged_model_id,
        )

    def _run_data(
        self, p: Principal, run_id: str | None
    ) -> tuple[dict[str, float], dict[str, str]]:
        if run_id is None or self._run_reader is None:
            return {}, {}
        run = self._run_reader(p, run_id)
        return dict(run.data.metrics), dict(run.data.params)

    def _refuse(self, p: Principal, project: str, name: str, summary: str, verdict: str) -> None:
        with self._guard.unit(write=True) as s:
            proj = project_rows.get_or_create(s, project)
            self._guard.audit(
                s,
                p,
                "model.register.refused",
                f"model/{name}",
                proj.id,
                details={"verdict": verdict},
            )
        if verdict == "unsafe":
            raise UnsafeArtifact(
                f"{name}: registration refused, the scan found code execution.\n{summary}"
            )
        raise UnsafeArtifact(
            f"{name}: the scan could not tell whether loading this model is safe.\n{summary}\n"
            "A project admin can accept it with allow_unknown=True (--allow-unknown), which "
            "is recorded in the audit log."
        )

    def _store(self, folder: Path, files: list[ModelFile]) -> list[dict[str, Any]]:
        store = self._chunks()
        out = []
        for f in files:
            refs, _ = store.put_file(folder / f.path)
            out.append(
                {
                    "path": f.path,
                    "size": f.size,
                    "sha256": f.sha256,
                    "chunks": [[r.digest, r.size] for r in refs],
                }
            )
        return out

    def _record(
        self,
        p: Principal,
        project: str,
        name: str,
        built: Any,
        stored: list[dict[str, Any]],
        **fields: Any,
    ) -> ModelVersion:
        now = now_ms()
        with self._guard.unit(write=True) as s:
            proj = self._project(s, p, project, Permission.WRITE, "model.register", f"model/{name}")
            model = s.scalar(
                select(ModelRow).where(ModelRow.project_id == proj.id, ModelRow.name == name)
            )
            if model is None:
                model = ModelRow(
                    project_id=proj.id,
                    name=name,
                    description="",
                    owner=p.name,
                    created_at=now,
                    updated_at=now,
                    protected_aliases='["champion"]',
                    policy="{}",
                    version_seq=0,
                )
                s.add(model)
                s.flush()
            newest = s.scalar(
                select(func.max(ModelVersionRow.version)).where(
                    ModelVersionRow.model_id == model.id
                )
            )
            # Past the highest number ever given out: a deleted version's number stays retired.
            number = max(newest or 0, model.version_seq or 0) + 1
            model.version_seq = number
            row = ModelVersionRow(
                model_id=model.id,
                version=number,
                run_id=fields["run_id"],
                flavor=built.flavor,
                info=json.dumps(built.info, default=str),
                files=json.dumps(stored),
                manifest_sha256=fields["digest"],
                signature=built.signature.to_json() if built.signature is not None else None,
                onnx=json.dumps(built.onnx) if built.onnx is not None else None,
                scan=built.scan.to_json(),
                scan_verdict=built.scan.verdict,
                scan_override=fields["override"],
                signed_by=fields["signed_by"],
                manifest_signature=fields["manifest_signature"],
                metrics=json.dumps(fields["metrics"]),
                params=json.dumps(fields["params"]),
                environment=json.dumps(built.environment),
                card="{}",
                description=fields["description"],
                size=sum(f.size for f in built.files),
                created_at=now,
                created_by=p.name,
                stage="None",
                source=fields.get("source"),
                logged_model_id=fields.get("logged_model_id"),
            )
            s.add(row)
            model.updated_at = now
            s.flush()
            s.add_all(
                ModelTagRow(version_id=row.id, key=k, value=v) for k, v in fields["tags"].items()
            )
            details: dict[str, Any] = {
                "flavor": built.flavor,
                "scan": built.scan.verdict,
                "manifest_sha256": fields["digest"],
            }
            if fields["override"]:
                details["scan_override"] = fields["override"]
            self._guard.audit(
                s,
                p,
                "model.version.create",
                f"model/{name}@{row.version}",
                proj.id,
                details=details,
            )
            s.flush()
            return version_entity(s, model, row, project)

    # -- signing keys ------------------------------------------------------------------------

    def create_signing_key(
        self, p: Principal, *, project: str = projects.DEFAULT_PROJECT, required: bool = False
    ) -> str:
        """Give the project an Ed25519 key; new versions are signed with it. Returns its id."""
        from mlplane.registry.tables import SigningKeyRow

        private, public = integrity.new_key()
        version, wrapped = self._keys().wrap(private)
        with self._guard.unit(write=True) as s:
            proj = self._project(s, p, project, Permission.ADMIN, "model.key.create", "signing-key")
            s.merge(
                SigningKeyRow(
                    project_id=proj.id,
                    key_id=integrity.key_id(public),
                    public_key=public,
                    wrapped_private=wrapped,
                    key_version=version,
                    required=1 if required else 0,
                    created_at=now_ms(),
                )
            )
            self._guard.audit(
                s,
                p,
                "model.key.create",
                "signing-key",
                proj.id,
                details={"key_id": integrity.key_id(public), "required": required},
            )
        return integrity.key_id(public)

    def _key(self, project_id: int | None) -> _Key | None:
        from mlplane.registry.tables import SigningKeyRow

        if project_id is None:
            return None
        with self._db.read() as s:
            row = s.get(SigningKeyRow, project_id)
            if row is None:
                return None
            return _Key(
                row.key_id, row.public_key, row.wrapped_private, row.key_version, bool(row.required)
            )

    def _sign(self, project: str, digest: str) -> tuple[str | None, bytes | None]:
        with self._db.read() as s:
            proj = project_rows.find(s, project)
            project_id = proj.id if proj else None
        key = self._key(project_id)
        if key is None:
            return None, None
        private = self._keys().unwrap(key.key_version, key.wrapped_private)
        return key.key_id, integrity.sign(private, digest)

    # -- loading -----------------------------------------------------------------------------

    def fetch(
        self, p: Principal, ref: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> tuple[ModelVersion, Path, dict[str, Any]]:
        """The version, a local folder with its verified files, and the flavor info.

        Every file is hashed again against the registered SHA-256, and the manifest
        signature is verified when the project has a signing key (required: unsigned
        versions are refused). Any mismatch raises ``TamperedArtifact`` and is audited.
        """
        name, selector = uri.parse(ref)
        with self._guard.unit(write=True) as s:  # a load is an audited read
            proj, model = self._model(s, p, name, project, Permission.READ, "model.load")
            row = self._version_row(s, model, selector)
            version = version_entity(s, model, row, project)
            stored = json.loads(row.files)
            info = json.loads(row.info)
            signature = row.manifest_signature
            project_id = proj.id
            self._guard.audit(s, p, "model.load", f"model/{version.ref}", project_id)
        folder = self._materialize(row.manifest_sha256, stored)
        try:
            integrity.verify_files(folder, version.files, version.ref)
            self._verify_signature(project_id, version, signature)
        except Exception as exc:
            self._refused_load(p, version, project_id, exc)
            raise
        return version, folder, info

    def _refused_load(
        self, p: Principal, version: ModelVersion, project_id: int, exc: Exception
    ) -> None:
        self._guard.record(
            p,
            "model.load.refused",
            f"model/{version.ref}",
            project_id,
            details={"reason": str(exc)[:500]},
        )

    def _materialize(self, manifest_sha256: str, stored: list[dict[str, Any]]) -> Path:
        """The version's files in the local cache (named by the manifest digest), unverified."""
        from mlplane.blobs.chunks import ChunkRef

        folder = self._cache / manifest_sha256
        if not (folder / ".complete").exists():
            tmp = self._cache / f".tmp-{uuid.uuid4().hex}"
            try:
                store = self._chunks()
                for f in stored:
                    refs = [ChunkRef(d, n) for d, n in f["chunks"]]
                    store.get_file(refs, tmp / f["path"])
                (tmp / ".complete").touch()
                self._cache.mkdir(parents=True, exist_ok=True, mode=0o700)
                try:
                    tmp.rename(folder)
                except OSError:
                    if not (folder / ".complete").exists():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def _verify_signature(self, project_id: int, v: ModelVersion, signature: bytes | None) -> None:
        key = self._key(project_id)
        if key is None:
            return
        if signature is None:
            if key.required:
                from mlplane.errors import TamperedArtifact

                raise TamperedArtifact(
                    f"{v.ref} is not signed and project {v.project!r} requires signed versions"
                )
            return
        integrity.verify(key.public_key, v.manifest_sha256, signature, v.ref)

    # -- models ------------------------------------------------------------------------------

    def list_models(
        self, p: Principal, *, project: str = projects.DEFAULT_PROJECT
    ) -> list[RegisteredModel]:
        with self._guard.unit(write=False) as s:
            try:
                proj = self._project(s, p, project, Permission.READ, "model.list", "model/*")
            except NotFound:
                return []
            rows = s.scalars(
                select(ModelRow).where(ModelRow.project_id == proj.id).order_by(ModelRow.name)
            )
            return [model_entity(s, r, project) for r in rows]

    def get_model(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> RegisteredModel:
        with self._guard.unit(write=False) as s:
            _, model = self._model(s, p, name, project, Permission.READ, "model.read")
            return model_entity(s, model, project)

    def set_policy(
        self,
        p: Principal,
        name: str,
        policy: Mapping[str, Any] | str | None,
        *,
        protected: list[str] | None = None,
        project: str = projects.DEFAULT_PROJECT,
    ) -> RegisteredModel:
        """Set the promotion policy (and which aliases it protects); needs the approver role."""
        parsed = policy_mod.parse_policy(policy)
        for a in protected or []:
            uri.check_alias(a)
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.APPROVE, "model.policy")
            model.policy = policy_mod.to_json(parsed)
            if protected is not None:
                model.protected_aliases = json.dumps(sorted(set(protected)))
            model.updated_at = now_ms()
            self._guard.audit(
                s,
                p,
                "model.policy.set",
                f"model/{name}",
                proj.id,
                details={"policy": model.policy, "protected": model.protected_aliases},
            )
            s.flush()
            return model_entity(s, model, project)

    def set_alias(
        self,
        p: Principal,
        name: str,
        alias: str,
        version: int,
        *,
        project: str = projects.DEFAULT_PROJECT,
    ) -> ModelVersion:
        """Point ``alias`` at ``version``, atomically. A protected alias needs the approver
        role and a version that passes the promotion policy; a refusal names the rule."""
        uri.check_alias(alias)
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.WRITE, "model.alias")
            protected = alias in json.loads(model.protected_aliases)
            if protected:
                self._guard.require(
                    p,
                    Permission.APPROVE,
                    project=project,
                    project_id=proj.id,
                    action="model.alias.protected",
                    resource=f"model/{name}@{alias}",
                )
            row = self._version_row(s, model, str(version))
            candidate = version_entity(s, model, row, project)
            refused: tuple[int, list[str]] | None = None
            if protected:
                holder = s.scalar(
                    select(ModelAliasRow.version).where(
                        ModelAliasRow.model_id == model.id, ModelAliasRow.alias == alias
                    )
                )
                current = (
                    None
                    if holder is None
                    else version_entity(s, model, self._version_row(s, model, str(holder)), project)
                )
                problems = policy_mod.check(
                    policy_mod.parse_policy(model.policy), candidate, current
                )
                if problems:
                    refused = (proj.id, problems)
            if refused is None:
                s.merge(
                    ModelAliasRow(
                        model_id=model.id,
                        alias=alias,
                        version=row.version,
                        updated_at=now_ms(),
                        updated_by=p.name,
                    )
                )
                self._guard.audit(
                    s,
                    p,
                    "model.alias.set",
                    f"model/{name}@{alias}",
                    proj.id,
                    details={"version": row.version, "protected": protected},
                )
                s.flush()
                return version_entity(s, model, row, project)
        # A refused promotion is an audit event too, in its own transaction.
        project_id, problems = refused
        self._guard.record(
            p,
            "model.alias.refused",
            f"model/{name}@{alias}",
            project_id,
            details={"version": version, "problems": problems},
        )
        raise Conflict(f"{name}@{version} may not become {alias!r}: " + "; ".join(problems))

    def delete_alias(
        self, p: Principal, name: str, alias: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> None:
        with self._guard.unit(write=True) as s:
            proj, model = self._model(s, p, name, project, Permission.WRITE, "model.alias")
            if alias in json.loads(model.protected_aliases):
                self._guard.require(
                    p,
                    Permission.APPROVE,
                    project=project,
                    project_id=proj.id,
                    action="model.alias.protected",
                    resource=f"model/{name}@{alias}",
                )
            row = s.get(ModelAliasRow, (model.id, alias))
            if row is None:
                raise NotFound(f"{name} has no alias {alias!r}")
            s.delete(row)
            self._guard.audit(s, p, "model.alias.delete", f"model/{name}@{alias}", proj.id)
