"""The domain services wired to one database and one blob store.

Faces (SDK, server, CLI) build one :class:`Services` from :class:`Settings`
and call its services; nothing else opens the database or the blob store.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mlplane.blobs.store import BlobStore
from mlplane.config import Settings
from mlplane.db import Database, ensure_schema
from mlplane.security import Guard, Principal
from mlplane.security.keys import KeyRing, provider_for

if TYPE_CHECKING:
    from mlplane.blobs.chunks import ChunkStore
    from mlplane.datasets.entities import DatasetLineage
    from mlplane.datasets.service import DataService
    from mlplane.registry.service import RegistryService
    from mlplane.security.audit import AuditService
    from mlplane.security.identities import IdentityService
    from mlplane.security.masterkeys import KeyService
    from mlplane.serving.service import DeploymentService
    from mlplane.tracking.entities import RunInput
    from mlplane.tracking.service import TrackingService

T = TypeVar("T")


class Services:
    """Every domain service over one store. Each is built (and its module imported) on
    first use, so a command that needs one domain does not load them all."""

    def __init__(self, settings: Settings, db: Database, blobs: BlobStore) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.guard = Guard(db, lambda: self.keys)
        self._chunks: ChunkStore | None = None
        self._keys: KeyRing | None = None
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings, *, check_schema: bool = True) -> Services:
        db = Database(settings.resolved_db_url)
        if check_schema:
            ensure_schema(db, auto_upgrade=settings.auto_upgrade)
        return cls(settings, db, BlobStore(settings.resolved_artifacts_url))

    def _once(self, name: str, build: Callable[[], T]) -> T:
        found = self._built.get(name)
        if found is None:
            with self._lock:  # two threads never build two of one service
                found = self._built.get(name)
                if found is None:
                    found = self._built[name] = build()
        return found  # type: ignore[no-any-return]

    @property
    def tracking(self) -> TrackingService:
        def build() -> TrackingService:
            from mlplane.tracking.service import TrackingService

            tracking = TrackingService(
                self.db,
                self.blobs,
                self.guard,
                max_batch_points=self.settings.max_batch_points,
                secrets_policy=self.settings.secrets_policy,
            )
            tracking.input_check = self._check_input
            return tracking

        return self._once("tracking", build)

    @property
    def data(self) -> DataService:
        def build() -> DataService:
            from mlplane.datasets.service import DataService

            data = DataService(self.db, lambda: self.chunks, self.guard, lambda: self.keys)
            data.chunk_users = self.chunk_users
            return data

        return self._once("data", build)

    @property
    def registry(self) -> RegistryService:
        def build() -> RegistryService:
            from mlplane.registry.service import RegistryService

            registry = RegistryService(
                self.db,
                lambda: self.chunks,
                self.guard,
                lambda: self.keys,
                cache_dir=self.settings.home / "cache" / "models",
                run_reader=lambda *a, **kw: self.tracking.get_run(*a, **kw),
            )
            registry.chunk_users = self.chunk_users
            return registry

        return self._once("registry", build)

    @property
    def identities(self) -> IdentityService:
        def build() -> IdentityService:
            from mlplane.security.identities import IdentityService

            return IdentityService(self.db, self.guard)

        return self._once("identities", build)

    @property
    def audit(self) -> AuditService:
        def build() -> AuditService:
            from mlplane.security.audit import AuditService

            return AuditService(self.db, self.guard, lambda: self.keys)

        return self._once("audit", build)

    @property
    def master_keys(self) -> KeyService:
        def build() -> KeyService:
            from mlplane.security.masterkeys import KeyService

            return KeyService(self.db, self.guard, lambda: self.keys)

        return self._once("master_keys", build)

    @property
    def deployments(self) -> DeploymentService:
        def build() -> DeploymentService:
            from mlplane.serving.service import DeploymentService

            return DeploymentService(
                self.db,
                self.guard,
                self.registry,
                principal_now=lambda snapshot: self.identities.principal_now(snapshot),
            )

        return self._once("deployments", build)

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
        from mlplane.datasets.entities import DatasetLineage, LineageRun

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
        from mlplane.blobs.chunks import ChunkStore

        if self._chunks is None:
            self._chunks = ChunkStore(self.blobs, self.db, self.keys)
        return self._chunks

    def close(self) -> None:
        if self._chunks is not None:
            self._chunks.close()
        self.db.dispose()
