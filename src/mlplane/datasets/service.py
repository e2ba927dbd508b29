"""Dataset versions: immutable, content-addressed snapshots of files and folders.

``add`` stores each file as encrypted chunks (:class:`ChunkStore`), then
records the version in one transaction; a file whose size, mtime and inode
are unchanged since it was last stored is not read again (as DVC does). Adding
content identical to the newest version creates nothing. Versions are numbered
from 1; ``@latest`` follows the newest and other tags move on request.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from mlplane import projects
from mlplane.blobs.chunks import ChunkRef, ChunkStore
from mlplane.blobs.shred import shred_chunks
from mlplane.datasets.adding import AddingMixin
from mlplane.datasets.entities import DatasetFile, DatasetVersion
from mlplane.datasets.sampling import SamplingMixin
from mlplane.datasets.tables import (
    DatasetFileRow,
    DatasetRow,
    DatasetTagRow,
    DatasetVersionRow,
)
from mlplane.db import numbered
from mlplane.db.engine import Database
from mlplane.errors import InvalidInput, NotFound, PermissionDenied, QualityGateFailed
from mlplane.projects import service as project_rows
from mlplane.projects.tables import ProjectRow
from mlplane.security import Guard, Permission, Principal
from mlplane.security.keys import KeyRing

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,249}$")
_TAG = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,99}$")
LATEST = "latest"


def parse_ref(ref: str) -> tuple[str, str]:
    """``name``, ``name@3``, ``name@latest`` or ``name@prod`` → (name, selector)."""
    name, _, selector = ref.partition("@")
    if not _NAME.match(name):
        raise InvalidInput(
            f"{name!r} is not a dataset name: use letters, digits, '_', '-' and '.', "
            "starting with a letter or digit"
        )
    selector = selector or LATEST
    if not (selector.isdigit() or _TAG.match(selector)):
        raise InvalidInput(f"{selector!r} is not a version number or a tag")
    return name, selector


class DataService(AddingMixin, SamplingMixin):
    """Dataset versions over the metadata database and the chunk store."""

    def __init__(
        self,
        db: Database,
        chunks: Callable[[], ChunkStore],
        guard: Guard,
        keys: Callable[[], KeyRing],
    ) -> None:
        self._db = db
        self._chunks = chunks
        self._guard = guard
        self._keys = keys
        self.chunk_users: Callable[[Any], set[str]] | None = None
        """Every chunk any dataset or model version lists, in a session: what shredding
        must spare. Set by whoever wires the services together (models store chunks too)."""

    def _project(
        self, s, p: Principal, project: str, perm: Permission, action: str, resource: str
    ) -> ProjectRow:  # type: ignore[no-untyped-def]
        return project_rows.guarded(
            s,
            self._guard,
            p,
            project,
            perm,
            action=action,
            resource=resource,
            create=perm == Permission.WRITE,
            holds="datasets yet",
        )

    # -- reading -----------------------------------------------------------------------------

    def _resolve(
        self, s, p: Principal, ref: str, project: str
    ) -> tuple[DatasetRow, DatasetVersionRow]:  # type: ignore[no-untyped-def]
        name, selector = parse_ref(ref)
        try:
            proj = self._project(s, p, project, Permission.READ, "dataset.read", f"dataset/{name}")
        except NotFound:
            raise NotFound(f"no dataset named {name!r} in project {project!r}") from None
        ds = s.scalar(
            select(DatasetRow).where(DatasetRow.project_id == proj.id, DatasetRow.name == name)
        )
        if ds is None:
            raise NotFound(f"no dataset named {name!r} in project {project!r}")
        row = numbered.resolve(
            s,
            selector,
            label=name,
            row=DatasetVersionRow,
            owner=DatasetVersionRow.dataset_id,
            number=DatasetVersionRow.version,
            owner_id=ds.id,
            pointer_owner=DatasetTagRow.dataset_id,
            pointer_name=DatasetTagRow.tag,
            pointer_number=DatasetTagRow.version,
            pointers_are="tags",
        )
        return ds, row

    def _entity(
        self,
        s,
        ds: DatasetRow,
        row: DatasetVersionRow,
        project: str,
        *,
        files: bool,
        tables_only: bool = False,
    ) -> DatasetVersion:  # type: ignore[no-untyped-def]
        from mlplane.datasets import profile_data as profile_mod
        from mlplane.datasets.contracts import ContractReport
        from mlplane.datasets.pii import PiiReport

        tags = sorted(
            s.scalars(
                select(DatasetTagRow.tag).where(
                    DatasetTagRow.dataset_id == ds.id, DatasetTagRow.version == row.version
                )
            )
        )
        listed: list[DatasetFile] = []
        if files:
            # Driver rows, not ORM rows: a version can list 100,000 files.
            cols = ("path", "size", "digest", "profile", "pii")
            sql = (
                f"SELECT {', '.join(cols)} FROM {DatasetFileRow.__tablename__} "
                f"WHERE version_id = {'?' if self._db.is_sqlite else '%s'}"
                + (" AND (profile IS NOT NULL OR pii IS NOT NULL)" if tables_only else "")
                + " ORDER BY path"
            )
            # The driver's own cursor: SQLAlchemy's result rows cost more than the query.
            cursor = s.connection().connection.cursor()
            try:
                cursor.execute(sql, (row.id,))
                listed = [
                    DatasetFile(
                        path,
                        size,
                        digest,
                        profile_mod.from_json(profile) if profile else None,
                        PiiReport.from_json(pii) if pii else None,
                    )
                    for path, size, digest, profile, pii in cursor.fetchall()
                ]
            finally:
                cursor.close()
        return DatasetVersion(
            name=ds.name,
            version=row.version,
            project=project,
            digest=row.digest,
            size=row.size,
            file_count=row.file_count,
            created_at=row.created_at,
            created_by=row.created_by,
            tags=tags,
            files=listed,
            quality=ContractReport.from_json(row.quality) if row.quality else None,
            pii_unhandled=row.pii_unhandled,
            pii_policy=json.loads(row.pii_policy) if row.pii_policy else None,
            derived_from=row.derived_from,
            derivation=json.loads(row.derivation) if row.derivation else None,
        )

    def get(
        self,
        p: Principal,
        ref: str,
        *,
        project: str = projects.DEFAULT_PROJECT,
        tables_only: bool = False,
    ) -> DatasetVersion:
        """A version with its file list: ``name``, ``name@3``, ``name@latest``, ``name@prod``.

        ``tables_only`` lists only the table files (those with a profile or a PII report),
        for a caller that shows a summary of a version of 100,000 images."""
        with self._guard.unit(write=False) as s:
            ds, row = self._resolve(s, p, ref, project)
            return self._entity(s, ds, row, project, files=True, tables_only=tables_only)

    def versions(
        self, p: Principal, name: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> list[DatasetVersion]:
        """Every version of a dataset, newest first (without file lists)."""
        with self._guard.unit(write=False) as s:
            ds, _ = self._resolve(s, p, name, project)
            rows = s.scalars(
                select(DatasetVersionRow)
                .where(DatasetVersionRow.dataset_id == ds.id)
                .order_by(DatasetVersionRow.version.desc())
            )
            return [self._entity(s, ds, r, project, files=False) for r in rows]

    def list_datasets(
        self, p: Principal, *, project: str = projects.DEFAULT_PROJECT
    ) -> list[DatasetVersion]:
        """The newest version of every dataset in a project."""
        with self._guard.unit(write=False) as s:
            try:
                proj = self._project(s, p, project, Permission.READ, "dataset.list", "dataset/*")
            except NotFound:
                return []
            newest = (
                select(DatasetVersionRow.dataset_id, func.max(DatasetVersionRow.version).label("v"))
                .group_by(DatasetVersionRow.dataset_id)
                .subquery()
            )
            rows = s.execute(
                select(DatasetRow, DatasetVersionRow)
                .join(newest, newest.c.dataset_id == DatasetRow.id)
                .join(
                    DatasetVersionRow,
                    (DatasetVersionRow.dataset_id == DatasetRow.id)
                    & (DatasetVersionRow.version == newest.c.v),
                )
                .where(DatasetRow.project_id == proj.id)
                .order_by(DatasetRow.name)
            ).all()
            return [self._entity(s, ds, row, project, files=False) for ds, row in rows]

    def tag(
        self, p: Principal, ref: str, tag: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> DatasetVersion:
        """Point ``tag`` (e.g. ``prod``) at a version; ``latest`` moves by itself."""
        if tag == LATEST or not _TAG.match(tag) or tag.isdigit():
            raise InvalidInput(
                f"{tag!r} cannot be set: use a name like 'prod' ('latest' moves by itself)"
            )
        with self._guard.unit(write=True) as s:
            ds, row = self._resolve(s, p, ref, project)
            proj = self._project(
                s, p, project, Permission.WRITE, "dataset.tag", f"dataset/{ds.name}"
            )
            s.merge(DatasetTagRow(dataset_id=ds.id, tag=tag, version=row.version))
            self._guard.audit(
                s,
                p,
                "dataset.tag",
                f"dataset/{ds.name}@{row.version}",
                proj.id,
                details={"tag": tag},
            )
            s.flush()
            return self._entity(s, ds, row, project, files=False)

    def delete_version(
        self,
        p: Principal,
        ref: str,
        *,
        project: str = projects.DEFAULT_PROJECT,
        shred: bool = False,
    ) -> int:
        """Delete a version and the tags on it; returns how many chunks were shredded.

        Without ``shred`` its chunks stay until garbage collection. With ``shred`` (the
        project admin role), the chunks no other dataset or model version lists are
        destroyed at once (see :func:`~mlplane.blobs.shred.shred_chunks`): their blobs
        become unreadable, backups included. Shared chunks stay readable.
        """
        if shred and self.chunk_users is None:
            raise InvalidInput("shredding needs the services wired together (chunk_users)")
        action = "dataset.shred" if shred else "dataset.delete"
        with self._guard.unit(write=True) as s:
            ds, row = self._resolve(s, p, ref, project)
            resource = f"dataset/{ds.name}@{row.version}"
            perm = Permission.ADMIN if shred else Permission.WRITE
            proj = self._project(s, p, project, perm, action, resource)
            files = s.scalars(
                select(DatasetFileRow.chunks).where(DatasetFileRow.version_id == row.id)
            )
            mine = {d for chunks in files for d, _ in json.loads(chunks)}
            s.execute(
                delete(DatasetTagRow).where(
                    DatasetTagRow.dataset_id == ds.id, DatasetTagRow.version == row.version
                )
            )
            s.execute(delete(DatasetFileRow).where(DatasetFileRow.version_id == row.id))
            s.delete(row)
            s.flush()
            shredded = 0
            if shred and self.chunk_users is not None:
                shredded = shred_chunks(s, mine - self.chunk_users(s))
            self._guard.audit(
                s, p, action, resource, proj.id, details={"shredded_chunks": shredded}
            )
        return shredded

    def referenced_chunks(self, *, since_ms: int | None = None, session: Any = None) -> set[str]:
        """Digests of every chunk a version lists (only versions made since ``since_ms``)."""
        q = select(DatasetFileRow.chunks)
        if since_ms is not None:
            q = q.join(DatasetVersionRow, DatasetVersionRow.id == DatasetFileRow.version_id).where(
                DatasetVersionRow.created_at >= since_ms
            )
        out: set[str] = set()

        def scan(s: Any) -> None:
            for (chunks,) in s.execute(q.execution_options(yield_per=2000)):
                out.update(d for d, _ in json.loads(chunks))

        if session is not None:
            scan(session)
        else:
            with self._db.read() as s:
                scan(s)
        return out

    def derived_versions(self, p: Principal, ref: str, *, project: str) -> list[str]:
        """Versions made from ``ref`` (samples), as ``name@version``."""
        with self._guard.unit(write=False) as s:
            ds, row = self._resolve(s, p, ref, project)
            proj = project_rows.find(s, project)
            found = s.execute(
                select(DatasetRow.name, DatasetVersionRow.version)
                .join(DatasetRow, DatasetRow.id == DatasetVersionRow.dataset_id)
                .where(
                    DatasetRow.project_id == (proj.id if proj else -1),
                    DatasetVersionRow.derived_from == f"{ds.name}@{row.version}",
                )
                .order_by(DatasetRow.name, DatasetVersionRow.version)
            ).all()
            return [f"{n}@{v}" for n, v in found]

    def check_use(self, p: Principal, ref: str, *, project: str, allow_pii: bool = False) -> bool:
        """Whether a run may read ``ref`` as an input; True when it does so despite
        unhandled PII (``allow_pii``, an audited decision).

        Raises:
            QualityGateFailed: the version holds PII no policy handled and ``allow_pii``
                is not set.
        """
        with self._guard.unit(write=allow_pii) as s:
            ds, row = self._resolve(s, p, ref, project)
            if not row.pii_unhandled:
                return False
            if not allow_pii:
                raise QualityGateFailed(
                    f"{ds.name}@{row.version} holds PII that no policy handles "
                    f"(see `mlplane data show {ds.name}@{row.version}`), so it cannot be a "
                    "training input. Add it again with --pii mask|hash|drop, or pass "
                    "allow_pii=True to log_input to record an explicit decision."
                )
            proj = project_rows.find(s, project)
            self._guard.audit(
                s,
                p,
                "dataset.pii.allow_use",
                f"dataset/{ds.name}@{row.version}",
                proj.id if proj else None,
            )
            return True

    def _require_pii_export(
        self,
        s: Any,
        p: Principal,
        ds: DatasetRow,
        row: DatasetVersionRow,
        project: str,
        proj: ProjectRow | None,
    ) -> None:
        """Bytes of a version with unhandled PII leave the store only for a project admin,
        and every such export is audited (``dataset.export.pii``), allowed or denied.

        Every method that hands out a version's bytes calls this, so the SDK, the CLI,
        HTTP, samples and SQL over versions all follow one rule; metadata (the file list,
        profiles, the PII report) stays readable with the read permission.
        """
        if not row.pii_unhandled:
            return
        version = f"{ds.name}@{row.version}"
        resource = f"dataset/{version}"
        project_id = proj.id if proj else None
        try:
            self._guard.require(
                p,
                Permission.ADMIN,
                project=project,
                project_id=project_id,
                action="dataset.export.pii",
                resource=resource,
            )
        except PermissionDenied as exc:
            raise PermissionDenied(
                f"{version} holds PII that no policy handles (see `mlplane data show "
                f"{version}`): exporting or downloading it needs the 'admin' role on project "
                f"{project!r}, which {p.name} does not have. Add the data again with its PII "
                "columns masked (--pii mask, or pii='mask' in mlplane.data.add), or ask a "
                "project admin",
                **exc.details,
            ) from None
        self._guard.audit(s, p, "dataset.export.pii", resource, project_id)

    def open_file(
        self, p: Principal, ref: str, path: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> tuple[int, Iterator[bytes]]:
        """One file of a version: its size and its bytes, decrypted chunk by chunk.

        Raises:
            PermissionDenied: the version holds unhandled PII and ``p`` is not a project
                admin (see :meth:`_require_pii_export`).
        """
        with self._guard.unit(write=True) as s:  # a download is an audited event
            ds, row = self._resolve(s, p, ref, project)
            found = s.execute(
                select(DatasetFileRow.size, DatasetFileRow.chunks).where(
                    DatasetFileRow.version_id == row.id, DatasetFileRow.path == path
                )
            ).first()
            if found is None:
                raise NotFound(f"{ds.name}@{row.version} has no file {path!r}")
            proj = project_rows.find(s, project)
            self._require_pii_export(s, p, ds, row, project, proj)
            self._guard.audit(
                s,
                p,
                "dataset.download",
                f"dataset/{ds.name}@{row.version}/{path}",
                proj.id if proj else None,
            )
        refs = [ChunkRef(d, n) for d, n in json.loads(found.chunks)]
        return found.size, self._chunks().iter_bytes(refs)

    def materialize(
        self,
        p: Principal,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        project: str = projects.DEFAULT_PROJECT,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Write a version's files under ``dest`` (each file atomically); returns ``dest``.

        ``progress(n)`` is called with the bytes written as they are written. A version
        with unhandled PII needs the project admin role, as in :meth:`open_file`."""
        out = Path(dest)
        with self._guard.unit(write=True) as s:  # a download is an audited event
            ds, row = self._resolve(s, p, ref, project)
            files = s.execute(
                select(DatasetFileRow.path, DatasetFileRow.chunks).where(
                    DatasetFileRow.version_id == row.id
                )
            ).all()
            proj = project_rows.find(s, project)
            self._require_pii_export(s, p, ds, row, project, proj)
            self._guard.audit(
                s,
                p,
                "dataset.download",
                f"dataset/{ds.name}@{row.version}",
                proj.id if proj else None,
            )
        store = self._chunks()
        for rel, chunks in files:
            refs = [ChunkRef(d, n) for d, n in json.loads(chunks)]
            _write_atomic(out / rel, store.iter_bytes(refs), progress)
        return out


def _write_atomic(
    dest: Path, chunks: Iterator[bytes], progress: Callable[[int], None] | None
) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            for data in chunks:
                fh.write(data)
                if progress:
                    progress(len(data))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
