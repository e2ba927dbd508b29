"""Artifact use cases of the tracking service: files stored as content-addressed blobs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import ColumnElement, delete, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from mlplane.db.engine import now_ms
from mlplane.errors import InvalidInput, NotFound
from mlplane.security import Permission, Principal
from mlplane.tracking import validation as check
from mlplane.tracking._base import ServiceBase
from mlplane.tracking.entities import ArtifactInfo
from mlplane.tracking.tables import ArtifactRow


def under(
    column: ColumnElement[str] | InstrumentedAttribute[str], prefix: str
) -> ColumnElement[bool]:
    """Paths strictly below the folder ``prefix`` (LIKE with its wildcards escaped)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(escaped + "/%", escape="\\")


def listing(
    rows: Iterable[Sequence[Any]], prefix: str, *, recursive: bool = False
) -> list[ArtifactInfo]:
    """``(path, size, digest)`` rows below ``prefix`` as files and folders directly under it
    (or every file, when recursive)."""
    if recursive:
        return [ArtifactInfo(path=r[0], is_dir=False, size=r[1], digest=r[2]) for r in rows]
    base = len(prefix) + 1 if prefix else 0
    out: dict[str, ArtifactInfo] = {}
    for apath, size, digest in rows:
        head, sep, _ = apath[base:].partition("/")
        full = (prefix + "/" + head) if prefix else head
        if sep:
            out.setdefault(full, ArtifactInfo(path=full, is_dir=True))
        else:
            out[full] = ArtifactInfo(path=full, is_dir=False, size=size, digest=digest)
    return list(out.values())


class ArtifactsMixin(ServiceBase):
    def log_artifact(
        self, p: Principal, run_id: str, path: str, source: str | os.PathLike[str] | Iterable[bytes]
    ) -> ArtifactInfo:
        """Store a file (a local path or a stream of bytes) as ``path`` in the run's artifacts.

        The blob is stored before the row that points to it is committed, so
        a crash leaves at most an unreferenced blob, never a dangling row.
        """
        clean = check.artifact_path(path)
        with self._guard.unit(write=False) as s:
            self._writable_run(s, p, run_id, "artifact.write")
        if isinstance(source, str | os.PathLike):
            if not Path(source).is_file():
                raise InvalidInput(f"{source} is not a file")
            digest, size = self._blobs.put_file(source)
        else:
            digest, size = self._blobs.put_stream(source)
        with self._guard.unit(write=True) as s:
            self._writable_run(s, p, run_id, "artifact.write")
            s.merge(
                ArtifactRow(
                    run_id=run_id, path=clean, digest=digest, size=size, created_at=now_ms()
                )
            )
        return ArtifactInfo(path=clean, is_dir=False, size=size, digest=digest)

    def list_artifacts(
        self, p: Principal, run_id: str, path: str | None = None, *, recursive: bool = False
    ) -> list[ArtifactInfo]:
        """Files and folders directly under ``path`` (or every file below it when recursive)."""
        prefix = check.artifact_path(path, allow_root=True)
        with self._guard.unit(write=False) as s:
            self._run_for(s, p, run_id, Permission.READ, "artifact.list")
            q = select(ArtifactRow.path, ArtifactRow.size, ArtifactRow.digest).where(
                ArtifactRow.run_id == run_id
            )
            if prefix:
                q = q.where(under(ArtifactRow.path, prefix))
            rows = s.execute(q.order_by(ArtifactRow.path)).all()
        return listing(rows, prefix, recursive=recursive)

    def delete_artifacts(self, p: Principal, run_id: str, path: str | None = None) -> int:
        """Remove the file ``path``, or every file below the folder ``path`` (all without one).

        Returns how many files went; their blobs go at garbage collection.
        """
        prefix = check.artifact_path(path, allow_root=True)
        with self._guard.unit(write=True) as s:
            _, proj = self._writable_run(s, p, run_id, "artifact.delete")
            q = delete(ArtifactRow).where(ArtifactRow.run_id == run_id)
            if prefix:
                q = q.where(or_(ArtifactRow.path == prefix, under(ArtifactRow.path, prefix)))
            gone = s.execute(q).rowcount  # type: ignore[attr-defined]
            self._guard.audit(
                s, p, "artifact.delete", f"run/{run_id}", proj.id, details={"path": prefix}
            )
        return int(gone or 0)

    def open_artifact(self, p: Principal, run_id: str, path: str) -> tuple[ArtifactInfo, BinaryIO]:
        """A file artifact's description and a stream of its bytes."""
        clean = check.artifact_path(path)
        with self._guard.unit(write=False) as s:
            self._run_for(s, p, run_id, Permission.READ, "artifact.read")
            row = s.get(ArtifactRow, (run_id, clean))
            if row is None:
                raise NotFound(f"run {run_id} has no artifact file {clean!r}")
            info = ArtifactInfo(path=row.path, is_dir=False, size=row.size, digest=row.digest)
        return info, self._blobs.open(info.digest or "")

    def iter_artifact(self, p: Principal, run_id: str, path: str) -> Iterator[bytes]:
        _, fh = self.open_artifact(p, run_id, path)
        with fh:
            while chunk := fh.read(1024 * 1024):
                yield chunk
