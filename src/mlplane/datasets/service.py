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
from collections.abc import Callable, Sequence
from pathlib import Path

import blake3
import pyarrow as pa
from sqlalchemy import func, select

from mlplane import projects
from mlplane.blobs.chunks import ChunkRef, ChunkStore
from mlplane.blobs.store import PREFIX
from mlplane.blobs.tables import ChunkRow
from mlplane.datasets import profile as profile_mod
from mlplane.datasets.entities import AddResult, DatasetFile, DatasetVersion
from mlplane.datasets.tables import (
    DatasetFileRow,
    DatasetRow,
    DatasetTagRow,
    DatasetVersionRow,
    HashCacheRow,
)
from mlplane.db.engine import Database, now_ms
from mlplane.errors import InvalidInput, NotFound
from mlplane.projects import service as project_rows
from mlplane.projects.tables import ProjectRow
from mlplane.security import Guard, Permission, Principal

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


def _file_digest(refs: Sequence[ChunkRef]) -> str:
    return PREFIX + blake3.blake3("\n".join(r.digest for r in refs).encode()).hexdigest()


class DataService:
    """Dataset versions over the metadata database and the chunk store."""

    def __init__(self, db: Database, chunks: Callable[[], ChunkStore], guard: Guard) -> None:
        self._db = db
        self._chunks = chunks
        self._guard = guard

    def _project(
        self, s, p: Principal, project: str, perm: Permission, action: str, resource: str
    ) -> ProjectRow:  # type: ignore[no-untyped-def]
        row = (
            project_rows.get_or_create(s, project)
            if perm == Permission.WRITE
            else project_rows.find(s, project)
        )
        self._guard.require(
            p,
            perm,
            project=project,
            project_id=row.id if row else None,
            action=action,
            resource=resource,
        )
        if row is None:  # nothing was ever stored in this project
            raise NotFound(f"project {project!r} has no datasets yet")
        return row

    # -- adding ------------------------------------------------------------------------------

    def add(
        self,
        p: Principal,
        name: str,
        source: str | os.PathLike[str],
        *,
        project: str = projects.DEFAULT_PROJECT,
        progress: Callable[[int], None] | None = None,
    ) -> AddResult:
        """Store ``source`` (a file or a folder) as the next version of ``name``."""
        name, selector = parse_ref(name)
        if selector != LATEST or "@" in str(name):
            raise InvalidInput("add takes a dataset name without @version")
        root = Path(source)
        if not root.exists():
            raise InvalidInput(f"{root} does not exist")
        files = _list_files(root)
        if not files:
            raise InvalidInput(f"{root} holds no files")
        with self._guard.unit(write=False) as s:
            self._require_write(s, p, project, name)
        entries: list[tuple[str, int, str, list[ChunkRef]]] = []
        bytes_in = stored = rehashed = 0
        cache = self._cached([f for _, f in files])
        new_cache: list[dict[str, object]] = []
        for rel, path in files:
            st = path.stat()
            key = str(path.resolve())
            hit = cache.get(key)
            if hit is not None and hit[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
                refs = hit[3]
                if progress:
                    progress(st.st_size)
            else:
                refs, stats = self._chunks().put_file(path, progress=progress)
                bytes_in += stats.bytes_in
                stored += stats.bytes_stored
                rehashed += 1
                new_cache.append(
                    {
                        "path": key,
                        "size": st.st_size,
                        "mtime_ns": st.st_mtime_ns,
                        "inode": st.st_ino,
                        "digest": _file_digest(refs),
                        "chunks": json.dumps([[r.digest, r.size] for r in refs]),
                    }
                )
            entries.append((rel, st.st_size, _file_digest(refs), refs))
        digest = (
            PREFIX
            + blake3.blake3(
                "".join(f"{rel}\0{size}\0{d}\n" for rel, size, d, _ in sorted(entries)).encode()
            ).hexdigest()
        )
        profiles = self._profiles(entries, dict(files))
        with self._guard.unit(write=True) as s:
            proj = self._project(s, p, project, Permission.WRITE, "dataset.add", f"dataset/{name}")
            ds = s.scalar(
                select(DatasetRow).where(DatasetRow.project_id == proj.id, DatasetRow.name == name)
            )
            if ds is None:
                ds = DatasetRow(project_id=proj.id, name=name, created_at=now_ms())
                s.add(ds)
                s.flush()
            newest = s.scalar(
                select(DatasetVersionRow)
                .where(DatasetVersionRow.dataset_id == ds.id)
                .order_by(DatasetVersionRow.version.desc())
                .limit(1)
            )
            created = newest is None or newest.digest != digest
            if created:
                row = DatasetVersionRow(
                    dataset_id=ds.id,
                    version=(newest.version + 1) if newest else 1,
                    digest=digest,
                    size=sum(e[1] for e in entries),
                    file_count=len(entries),
                    created_at=now_ms(),
                    created_by=p.name,
                )
                s.add(row)
                s.flush()
                s.add_all(
                    DatasetFileRow(
                        version_id=row.id,
                        path=rel,
                        size=size,
                        digest=d,
                        chunks=json.dumps([[r.digest, r.size] for r in refs]),
                        profile=profiles.get(rel),
                    )
                    for rel, size, d, refs in entries
                )
                s.merge(DatasetTagRow(dataset_id=ds.id, tag=LATEST, version=row.version))
                self._guard.audit(
                    s,
                    p,
                    "dataset.version.create",
                    f"dataset/{name}@{row.version}",
                    proj.id,
                    details={"digest": digest, "files": len(entries)},
                )
                version_no = row.version
            else:
                assert newest is not None
                version_no = newest.version
        self._remember(new_cache)
        return AddResult(
            version=self.get(p, f"{name}@{version_no}", project=project),
            created=created,
            bytes_in=bytes_in,
            bytes_stored=stored,
            files_rehashed=rehashed,
        )

    def _require_write(self, s, p: Principal, project: str, name: str) -> None:  # type: ignore[no-untyped-def]
        # Fail before reading any data when the caller may not write here.
        row = project_rows.find(s, project)
        self._guard.require(
            p,
            Permission.WRITE,
            project=project,
            project_id=row.id if row else None,
            action="dataset.add",
            resource=f"dataset/{name}",
        )

    def _profiles(
        self, entries: Sequence[tuple[str, int, str, list[ChunkRef]]], paths: dict[str, Path]
    ) -> dict[str, str]:
        """Profiles of the table files: reused from any version that stored the same
        content, else computed in one streaming pass over the local file."""
        tables = {rel: d for rel, _, d, _ in entries if profile_mod.table_format(rel)}
        if not tables:
            return {}
        with self._db.read() as s:
            known = dict(
                s.execute(
                    select(DatasetFileRow.digest, DatasetFileRow.profile).where(
                        DatasetFileRow.digest.in_(set(tables.values())),
                        DatasetFileRow.profile.is_not(None),
                    )
                ).all()
            )
        out: dict[str, str] = {}
        for rel, digest in tables.items():
            reused = known.get(digest)
            if reused is not None:
                out[rel] = reused
                continue
            fmt = profile_mod.table_format(rel)
            try:
                prof = profile_mod.profile_files([paths[rel]], fmt or "")
            except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
                raise InvalidInput(f"{rel} is not a readable {fmt} file: {exc}") from None
            out[rel] = profile_mod.to_json(prof)
        return out

    def _cached(self, paths: Sequence[Path]) -> dict[str, tuple[int, int, int, list[ChunkRef]]]:
        keys = [str(p.resolve()) for p in paths]
        out: dict[str, tuple[int, int, int, list[ChunkRef]]] = {}
        with self._db.read() as s:
            for i in range(0, len(keys), 500):
                for r in s.execute(
                    select(HashCacheRow.__table__).where(HashCacheRow.path.in_(keys[i : i + 500]))
                ):
                    out[r.path] = (
                        r.size,
                        r.mtime_ns,
                        r.inode,
                        [ChunkRef(d, n) for d, n in json.loads(r.chunks)],
                    )
            # A cached file whose chunks are gone (garbage-collected) is stored again.
            wanted = {c.digest for v in out.values() for c in v[3]}
            present: set[str] = set()
            listed = list(wanted)
            for i in range(0, len(listed), 500):
                present |= set(
                    s.scalars(
                        select(ChunkRow.digest).where(ChunkRow.digest.in_(listed[i : i + 500]))
                    )
                )
        return {k: v for k, v in out.items() if all(c.digest in present for c in v[3])}

    def _remember(self, rows: list[dict[str, object]]) -> None:
        if not rows:
            return
        with self._db.write() as s:
            for row in rows:
                s.merge(HashCacheRow(**row))

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
        if selector.isdigit():
            number: int | None = int(selector)
        else:
            number = s.scalar(
                select(DatasetTagRow.version).where(
                    DatasetTagRow.dataset_id == ds.id, DatasetTagRow.tag == selector
                )
            )
        row = (
            None
            if number is None
            else s.scalar(
                select(DatasetVersionRow).where(
                    DatasetVersionRow.dataset_id == ds.id, DatasetVersionRow.version == number
                )
            )
        )
        if row is None:
            have = list(
                s.scalars(
                    select(DatasetVersionRow.version)
                    .where(DatasetVersionRow.dataset_id == ds.id)
                    .order_by(DatasetVersionRow.version)
                )
            )
            tags = list(
                s.scalars(select(DatasetTagRow.tag).where(DatasetTagRow.dataset_id == ds.id))
            )
            raise NotFound(
                f"{name}@{selector} does not exist; versions: {', '.join(map(str, have)) or 'none'}"
                + (f"; tags: {', '.join(sorted(tags))}" if tags else "")
            )
        return ds, row

    def _entity(
        self, s, ds: DatasetRow, row: DatasetVersionRow, project: str, *, files: bool
    ) -> DatasetVersion:  # type: ignore[no-untyped-def]
        tags = sorted(
            s.scalars(
                select(DatasetTagRow.tag).where(
                    DatasetTagRow.dataset_id == ds.id, DatasetTagRow.version == row.version
                )
            )
        )
        listed = (
            [
                DatasetFile(
                    path=f.path,
                    size=f.size,
                    digest=f.digest,
                    profile=profile_mod.from_json(f.profile) if f.profile else None,
                )
                for f in s.execute(
                    select(
                        DatasetFileRow.path,
                        DatasetFileRow.size,
                        DatasetFileRow.digest,
                        DatasetFileRow.profile,
                    )
                    .where(DatasetFileRow.version_id == row.id)
                    .order_by(DatasetFileRow.path)
                )
            ]
            if files
            else []
        )
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
        )

    def get(
        self, p: Principal, ref: str, *, project: str = projects.DEFAULT_PROJECT
    ) -> DatasetVersion:
        """A version with its file list: ``name``, ``name@3``, ``name@latest``, ``name@prod``."""
        with self._guard.unit(write=False) as s:
            ds, row = self._resolve(s, p, ref, project)
            return self._entity(s, ds, row, project, files=True)

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

    def materialize(
        self,
        p: Principal,
        ref: str,
        dest: str | os.PathLike[str],
        *,
        project: str = projects.DEFAULT_PROJECT,
    ) -> Path:
        """Write a version's files under ``dest`` (each file atomically); returns ``dest``."""
        out = Path(dest)
        with self._guard.unit(write=True) as s:  # a download is an audited event
            ds, row = self._resolve(s, p, ref, project)
            files = s.execute(
                select(DatasetFileRow.path, DatasetFileRow.chunks).where(
                    DatasetFileRow.version_id == row.id
                )
            ).all()
            proj = project_rows.find(s, project)
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
            store.get_file(refs, out / rel)
        return out


def _list_files(root: Path) -> list[tuple[str, Path]]:
    if root.is_file():
        return [(root.name, root)]
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out.append((path.relative_to(root).as_posix(), path))
    return out
