"""The domain services wired to one database and one blob store.

Faces (SDK, server, CLI) build one :class:`Services` from :class:`Settings`
and call its services; nothing else opens the database or the blob store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlplane.blobs import BlobStore
from mlplane.blobs.chunks import ChunkStore
from mlplane.config import Settings
from mlplane.datasets.entities import DatasetLineage, LineageRun
from mlplane.datasets.service import DataService
from mlplane.db import Database, ensure_schema
from mlplane.registry.service import RegistryService
from mlplane.security import Guard, Principal
from mlplane.security.audit import AuditService
from mlplane.security.identities import IdentityService
from mlplane.security.keys import KeyRing, provider_for
from mlplane.security.masterkeys import KeyService
from mlplane.serving.service import DeploymentService
from mlplane.tracking.entities import RunInput
from mlplane.tracking.service import TrackingService


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    guard: Guard
    tracking: TrackingService
    data: DataService
    registry: RegistryService
    identities: IdentityService
    audit: AuditService
    master_keys: KeyService
    deployments: DeploymentService
    _chunks: ChunkStore | None = field(default=None, repr=False)
    _keys: KeyRing | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, check_schema: bool = True) -> Services:
        db = Database(settings.resolved_db_url)
        if check_schema:
            ensure_schema(db, auto_upgrade=settings.auto_upgrade)
        blobs = BlobStore(settings.resolved_artifacts_url)
        guard = Guard(db, lambda: services.keys)
        tracking = TrackingService(
            db,
            blobs,
            guard,
            max_batch_points=settings.max_batch_points,
            secrets_policy=settings.secrets_policy,
        )
        identities = IdentityService(db, guard)
        registry = RegistryService(
            db,
            lambda: services.chunks,
            guard,
            lambda: services.keys,
            cache_dir=settings.home / "cache" / "models",
            run_reader=tracking.get_run,
        )
        services = cls(
            settings=settings,
            db=db,
            blobs=blobs,
            guard=guard,
            tracking=tracking,
            data=DataService(db, lambda: services.chunks, guard, lambda: services.keys),
            registry=registry,
            identities=identities,
            audit=AuditService(db, guard, lambda: services.keys),
            master_keys=KeyService(db, guard, lambda: services.keys),
            deployments=DeploymentService(
                db, guard, registry, principal_now=identities.principal_now
            ),
        )
        tracking.input_check = services._check_input
        services.data.chunk_users = services.registry.chunk_users = services.chunk_users
        return services

    def readable_projects(self, p: Principal) -> list[str]:
        """The projects ``p`` may read, for pickers in the UI and CLI."""
        return list(self.project_names(p).values())

    def project_names(self, p: Principal) -> dict[int, str]:
        """The id and name of each project ``p`` may read (audit events record ids)."""
        from mlplane.projects.service import readable_ids

        with self.db.read() as s:
            return readable_ids(s, p)

    def chunk_users(self, session: Any) -> set[str]:
        """Every chunk a dataset or model version or a captured payload file lists: what
        shredding must spare and garbage collection must keep."""
        return (
            self.data.referenced_chunks(session=session)
            | self.registry.referenced_chunks(session=session)
            | self.deployments.referenced_chunks(session=session)
        )

    def _check_input(self, p: Principal, inp: RunInput) -> bool:
        """Dataset versions stored here go through the data service's use check."""
        prefix = "mlplane-data:"
        if inp.kind != "dataset" or not inp.source.startswith(prefix):
            return False
        project, _, ref = inp.source[len(prefix) :].partition("/")
        return self.data.check_use(p, ref, project=project, allow_pii=inp.allow_pii)

    def dataset_lineage(self, p: Principal, ref: str, *, project: str) -> DatasetLineage:
        """A version's lineage: its source, the versions and runs downstream."""
        version = self.data.get(p, ref, project=project)
        runs = [
            LineageRun(
                run_id=info.run_id,
                run_name=info.run_name,
                experiment_id=info.experiment_id,
                status=info.status,
                start_time=info.start_time,
                context=context,
                unhandled_pii=unhandled,
            )
            for info, context, unhandled in self.tracking.runs_reading(
                p, "dataset", version.name, str(version.version), project=project
            )
        ]
        return DatasetLineage(
            version=version,
            derived_from=version.derived_from,
            derived=self.data.derived_versions(p, version.ref, project=project),
            runs=runs,
        )

    @property
    def keys(self) -> KeyRing:
        """The master key ring; the key file is created on first use."""
        if self._keys is None:
            secret, previous = self.settings.master_key, self.settings.master_key_previous
            provider = provider_for(
                self.settings.home,
                secret.get_secret_value() if secret else None,
                previous.get_secret_value() if previous else None,
            )
            self._keys = KeyRing(provider)
        return self._keys

    @property
    def chunks(self) -> ChunkStore:
        """The encrypted chunk store."""
        if self._chunks is None:
            self._chunks = ChunkStore(self.blobs, self.db, self.keys)
        return self._chunks

    def close(self) -> None:
        if self._chunks is not None:
            self._chunks.close()
        self.db.dispose()
