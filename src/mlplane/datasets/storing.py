"""Putting a version's local files into the chunk store, skipping unchanged files.

A file whose path, size, mtime and inode match the hash cache (as DVC keys its
cache) is not read again: its chunk list is taken from the cache, provided the
chunks still exist (garbage collection may have removed them). The files to
read go to the chunk store together, so small files share its batches; the
cache is read and written with a few set-based statements, not one per file.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from mlplane.blobs.chunks import ChunkRef, ChunkStore
from mlplane.blobs.store import PREFIX
from mlplane.datasets.tables import HashCacheRow
from mlplane.db.engine import Database

_IN_LIST = 900  # paths per IN (...): within SQLite's oldest limit on bound parameters
_TABLE = HashCacheRow.__tablename__
_CACHE_COLUMNS = ("size", "mtime_ns", "inode", "digest", "chunks")


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file of a version as stored: path inside the version, size, digest, chunks."""

    rel: str
    size: int
    digest: str
    refs: list[ChunkRef]


@dataclass
class StoreResult:
    files: list[StoredFile] = field(default_factory=list)
    bytes_in: int = 0
    bytes_stored: int = 0
    rehashed: int = 0


def chunks_json(refs: Sequence[ChunkRef]) -> str:
    """A file's chunk list as stored, ``[["<digest>", size], ...]``: written by hand, since
    ``json.dumps`` per file costs seconds for 100,000 files (digests need no escaping)."""
    return "[" + ",".join(f'["{r.digest}",{r.size}]' for r in refs) + "]"


def file_digest(refs: Sequence[ChunkRef]) -> str:
    """A file's digest: BLAKE3 over its ordered chunk digests."""
    return PREFIX + blake3.blake3("\n".join(r.digest for r in refs).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Listing:
    """A source's files as they are now: each file's cache key and ``stat``, in the order
    of the file list, and a digest of every (relative path, size, mtime, inode, device)."""

    paths: list[str]
    keys: list[str]
    stats: list[os.stat_result]
    digest: str

    def keys_and_stats(
        self, files: Sequence[tuple[str, str | Path]]
    ) -> tuple[list[str], list[os.stat_result]] | None:
        """The keys and stats of ``files``, all listed here or some of them; None when one
        was not listed."""
        paths = [os.fspath(p) for _, p in files]
        if paths == self.paths:
            return self.keys, self.stats
        where = {p: i for i, p in enumerate(self.paths)}
        if not all(p in where for p in paths):
            return None
        return [self.keys[where[p]] for p in paths], [self.stats[where[p]] for p in paths]


def tree_listing(files: Sequence[tuple[str, str | Path]]) -> Listing:
    """The listing of ``(rel, path)`` files, with one ``lstat`` per file."""
    paths = [os.fspath(p) for _, p in files]
    keys, stats = cache_keys_and_stats(paths)
    text = "".join(
        f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}\n"
        for (rel, _), st in zip(files, stats, strict=True)
    )
    return Listing(paths, keys, stats, PREFIX + blake3.blake3(text.encode()).hexdigest())


def cache_keys(paths: Sequence[str | Path]) -> list[str]:
    """The hash cache's key of each file: its real path, as ``Path.resolve()`` gives it."""
    return cache_keys_and_stats(paths)[0]


def cache_keys_and_stats(paths: Sequence[str | Path]) -> tuple[list[str], list[os.stat_result]]:
    """Each file's cache key and ``stat``, with one ``lstat`` per file: each folder is
    resolved once, rather than every component of every path (``Path.resolve()`` per
    file costs five times as much; 100,000 files sit in a few hundred folders)."""
    real: dict[str, str] = {}
    keys, stats = [], []
    lstat, is_link, sep = os.lstat, stat.S_ISLNK, os.sep
    for p in paths:
        text = os.fspath(p)
        st = lstat(text)
        if is_link(st.st_mode):  # a link to a file: keyed and sized by its target
            keys.append(os.path.realpath(text))
            stats.append(os.stat(text))
            continue
        folder, _, name = text.rpartition(sep)  # what os.path.split does, for less
        if folder not in real:
            real[folder] = os.path.realpath(folder or (sep if text.startswith(sep) else "."))
        keys.append(real[folder].rstrip(sep) + sep + name)
        stats.append(st)
    return keys, stats


def store_files(
    db: Database,
    chunks: ChunkStore,
    files: Sequence[tuple[str, str | Path]],
    *,
    progress: Callable[[int], None] | None = None,
    use_cache: bool = True,
    listing: Listing | None = None,
) -> StoreResult:
    """Store ``(rel, path)`` files; unchanged files (by the hash cache) are not read.

    The keys and stats of files in ``listing`` (taken when the source was listed) are
    not taken again."""
    out = StoreResult()
    taken = listing.keys_and_stats(files) if listing is not None else None
    keys, stats = taken or cache_keys_and_stats([p for _, p in files])
    cache = _cached(db, chunks, keys) if use_cache else {}
    refs: list[list[ChunkRef] | None] = [None] * len(files)
    skipped = 0
    for i, (key, st) in enumerate(zip(keys, stats, strict=True)):
        hit = cache.get(key)
        if hit is not None and hit[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
            refs[i] = hit[3]
            skipped += st.st_size
    if progress and skipped:
        progress(skipped)
    todo = [i for i, r in enumerate(refs) if r is None]
    put = chunks.put_files(
        [files[i][1] for i in todo], progress=progress, sizes=[stats[i].st_size for i in todo]
    )
    digests: dict[int, str] = {}
    new_cache: list[dict[str, Any]] = []
    for i, (file_refs, put_stats) in zip(todo, put, strict=True):
        refs[i] = file_refs
        digests[i] = digest = file_digest(file_refs)
        out.bytes_in += put_stats.bytes_in
        out.bytes_stored += put_stats.bytes_stored
        out.rehashed += 1
        if use_cache:
            st = stats[i]
            new_cache.append(
                {
                    "path": keys[i],
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "inode": st.st_ino,
                    "digest": digest,
                    "chunks": chunks_json(file_refs),
                }
            )
    for i, ((rel, _), st, found) in enumerate(zip(files, stats, refs, strict=True)):
        assert found is not None
        out.files.append(StoredFile(rel, st.st_size, digests.get(i) or file_digest(found), found))
    _remember(db, new_cache)
    return out


def cache_rows(db: Database, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """The hash cache's rows for these keys: ``path -> (path, size, mtime_ns, inode,
    digest, chunks)``, in driver statements (ORM rows for 100,000 files cost more than
    the lookup)."""
    out: dict[str, tuple[Any, ...]] = {}
    with db.read() as s:
        run = s.connection().exec_driver_sql
        for where, params in _in_lists(db, list(set(keys))):
            sql = f"SELECT path, size, mtime_ns, inode, digest, chunks FROM {_TABLE} WHERE {where}"
            for row in run(sql, params):
                out[row[0]] = tuple(row)
    return out


def _cached(
    db: Database, chunks: ChunkStore, keys: Sequence[str]
) -> dict[str, tuple[int, int, int, list[ChunkRef]]]:
    out: dict[str, tuple[int, int, int, list[ChunkRef]]] = {}
    for path, size, mtime_ns, inode, _, listed in cache_rows(db, keys).values():
        out[path] = (size, mtime_ns, inode, [ChunkRef(d, n) for d, n in json.loads(listed)])
    # A cached file whose chunks are gone (garbage-collected) is stored again; those
    # still there are marked as reused, so garbage collection keeps them.
    present = chunks.reuse({c.digest for v in out.values() for c in v[3]})
    return {k: v for k, v in out.items() if all(c.digest in present for c in v[3])}


def _remember(db: Database, rows: list[dict[str, Any]]) -> None:
    """Upsert the cache rows, many per statement (one transaction)."""
    if not rows:
        return
    # One row per path, the last one winning (a path listed twice in one add).
    unique = {r["path"]: r for r in rows}
    columns = ("path", *_CACHE_COLUMNS)
    mark = "?" if db.is_sqlite else "%s"
    sql = (
        f"INSERT INTO {_TABLE} ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))}) ON CONFLICT (path) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _CACHE_COLUMNS)
    )
    values = [tuple(r[c] for c in columns) for r in unique.values()]
    # Plain driver statements: SQLAlchemy's per-row work would cost more than the
    # database itself for 100,000 small files.
    with db.write() as s:
        s.connection().exec_driver_sql(sql, values)


def _in_lists(db: Database, keys: list[str]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """``path IN (...)`` conditions covering ``keys``: SQL and parameters."""
    if db.is_sqlite:
        for i in range(0, len(keys), _IN_LIST):
            part = keys[i : i + _IN_LIST]
            yield f"path IN ({', '.join('?' * len(part))})", tuple(part)
    else:  # one array parameter
        for i in range(0, len(keys), 10 * _IN_LIST):
            yield "path = ANY(%s)", (keys[i : i + 10 * _IN_LIST],)
