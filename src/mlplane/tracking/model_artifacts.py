"""A logged model's files: stored as content-addressed blobs, exactly like a run's artifacts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from mlplane.db.engine import now_ms
from mlplane.errors import Conflict, InvalidInput, NotFound
from mlplane.projects.tables import ProjectRow
from mlplane.security import Permission, Principal
from mlplane.tracking import validation as check
from mlplane.tracking.artifacts import listing, under
from mlplane.tracking.entities import ArtifactInfo, LifecycleStage
from mlplane.tracking.logged_models import LoggedModelsMixin
from mlplane.tracking.tables import LoggedModelArtifactRow, LoggedModelRow


class ModelArtifactsMixin(LoggedModelsMixin):
    def _writable_model(
        self, s: Session, p: Principal, model_id: str, action: str
    ) -> tuple[LoggedModelRow, ProjectRow]:
        row, proj = self._model_for(s, p, model_id, Permission.WRITE, action)
        if row.lifecycle_stage != LifecycleStage.ACTIVE:
            raise Conflict(f"logged model {model_id} is deleted")
        return row, proj

    def log_model_artifact(
        self, p: Principal, model_id: str, path: str, source: str | os.PathLike[str]
    ) -> ArtifactInfo:
        """Store the local file ``source`` as ``path`` in the model's files.

        As for runs, the blob is stored before the row that names it is committed.
        """
        clean = check.artifact_path(path)
        with self._guard.unit(write=False) as s:
            self._writable_model(s, p, model_id, "logged-model.artifact.write")
        if not Path(source).is_file():
            raise InvalidInput(f"{source} is not a file")
        digest, size = self._blobs.put_file(source)
        return self._record_model_artifact(p, model_id, clean, digest, size)

    def _record_model_artifact(
        self, p: Principal, model_id: str, path: str, digest: str, size: int
    ) -> ArtifactInfo:
        with self._guard.unit(write=True) as s:
            row, _ = self._writable_model(s, p, model_id, "logged-model.artifact.write")
            s.merge(
                LoggedModelArtifactRow(
                    model_id=row.id, path=path, digest=digest, size=size, created_at=now_ms()
                )
            )
        return ArtifactInfo(path=path, is_dir=False, size=size, digest=digest)

    def list_model_artifacts(
        self, p: Principal, model_id: str, path: str | None = None, *, recursive: bool = False
    ) -> list[ArtifactInfo]:
        """Files and folders directly under ``path`` of a model (every file when recursive)."""
        prefix = check.artifact_path(path, allow_root=True)
        with self._guard.unit(write=False) as s:
            self._model_for(s, p, model_id, Permission.READ, "logged-model.artifact.list")
            q = select(
                LoggedModelArtifactRow.path,
                LoggedModelArtifactRow.size,
                LoggedModelArtifactRow.digest,
            ).where(LoggedModelArtifactRow.model_id == model_id)
            if prefix:
                q = q.where(under(LoggedModelArtifactRow.path, prefix))
            rows = s.execute(q.order_by(LoggedModelArtifactRow.path)).all()
        return listing(rows, prefix, recursive=recursive)

    def open_model_artifact(
        self, p: Principal, model_id: str, path: str
    ) -> tuple[ArtifactInfo, BinaryIO]:
        """A model file's description and a stream of its bytes."""
        clean = check.artifact_path(path)
        with self._guard.unit(write=False) as s:
            self._model_for(s, p, model_id, Permission.READ, "logged-model.artifact.read")
            row = s.get(LoggedModelArtifactRow, (model_id, clean))
            if row is None:
                raise NotFound(f"logged model {model_id} has no file {clean!r}")
            info = ArtifactInfo(path=row.path, is_dir=False, size=row.size, digest=row.digest)
        return info, self._blobs.open(info.digest or "")

    def delete_model_artifacts(self, p: Principal, model_id: str, path: str | None = None) -> int:
        """Remove the file or folder ``path`` of a model (all its files without one)."""
        prefix = check.artifact_path(path, allow_root=True)
        with self._guard.unit(write=True) as s:
            row, proj = self._writable_model(s, p, model_id, "logged-model.artifact.delete")
            q = delete(LoggedModelArtifactRow).where(LoggedModelArtifactRow.model_id == row.id)
            if prefix:
                q = q.where(
                    or_(
                        LoggedModelArtifactRow.path == prefix,
                        under(LoggedModelArtifactRow.path, prefix),
                    )
                )
            gone = s.execute(q).rowcount  # type: ignore[attr-defined]
            self._guard.audit(
                s,
                p,
                "logged-model.artifact.delete",
                f"logged-model/{model_id}",
                proj.id,
                details={"path": prefix},
            )
        return int(gone or 0)
