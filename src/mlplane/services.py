"""The domain services wired to one database and one blob store.

Faces (SDK, server, CLI) build one :class:`Services` from :class:`Settings`
and call its services; nothing else opens the database or the blob store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlplane.blobs import BlobStore
from mlplane.blobs.chunks import ChunkStore
from mlplane.config import Settings
from mlplane.datasets.service import DataService
from mlplane.db import Database, ensure_schema
from mlplane.security import Guard
from mlplane.security.keys import KeyRing, provider_for
from mlplane.tracking.service import TrackingService


@dataclass
class Services:
    settings: Settings
    db: Database
    blobs: BlobStore
    guard: Guard
    tracking: TrackingService
    data: DataService
    _chunks: ChunkStore | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, check_schema: bool = True) -> Services:
        db = Database(settings.resolved_db_url)
        if check_schema:
            ensure_schema(db, auto_upgrade=settings.auto_upgrade)
        blobs = BlobStore(settings.resolved_artifacts_url)
        guard = Guard(db)
        tracking = TrackingService(db, blobs, guard, max_batch_points=settings.max_batch_points)
        services = cls(
            settings=settings,
            db=db,
            blobs=blobs,
            guard=guard,
            tracking=tracking,
            data=DataService(db, lambda: services.chunks, guard),
        )
        return services

    @property
    def chunks(self) -> ChunkStore:
        """The encrypted chunk store; the master key is created on first use."""
        if self._chunks is None:
            secret = self.settings.master_key
            provider = provider_for(
                self.settings.home, secret.get_secret_value() if secret else None
            )
            self._chunks = ChunkStore(self.blobs, self.db, KeyRing(provider))
        return self._chunks

    def close(self) -> None:
        if self._chunks is not None:
            self._chunks.close()
        self.db.dispose()
