"""Adding a version: check, mask and profile the tables, store the bytes, record the version.

The order is what makes an add safe to interrupt. Contracts are validated first,
and under a contract or a PII policy that can rewrite or refuse, every table is
read (PII handled, contract checked, profile computed) before a single chunk is
written, so a failed gate stores nothing; without either, nothing can refuse or
change the files, so they are stored while the tables are read. Chunks
are written before the version row that points at them, in one transaction at
the end, so an interrupted add leaves no version and no dangling reference;
a re-run finds the chunks already stored and skips them.

A dataset remembers its contract and PII policy: an add that names neither
inherits them from the newest version.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
from sqlalchemy import Table, select

from mlplane import projects
from mlplane.blobs.store import PREFIX
from mlplane.datasets.entities import AddResult
from mlplane.datasets.storing import (
    Listing,
    StoredFile,
    cache_keys,
    cache_rows,
    chunks_json,
    store_files,
    tree_listing,
)
from mlplane.datasets.tables import (
    DatasetFileRow,
    DatasetRow,
    DatasetTagRow,
    DatasetVersionRow,
    HashCacheRow,
    TreeCacheRow,
)
from mlplane.db.engine import now_ms
from mlplane.errors import InvalidInput, QualityGateFailed
from mlplane.projects import service as project_rows
from mlplane.security import Permission, Principal

if TYPE_CHECKING:  # the table pass (pandas, pyarrow, DuckDB) loads on the first add only
    from mlplane.datasets.contracts import Contract
    from mlplane.datasets.passes import PassResult
    from mlplane.datasets.pii import PiiPolicy

_FILE_TABLE: Table = DatasetFileRow.__table__  # type: ignore[assignment]
"""Driver inserts: no ORM work per file row (a version can list 100,000 files)."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,249}$")


def version_digest(entries: list[tuple[str, int, str]]) -> str:
    """A version's identity: BLAKE3 over every (path, size, file digest), sorted."""
    text = "".join(f"{rel}\0{size}\0{d}\n" for rel, size, d in sorted(entries))
    return PREFIX + blake3.blake3(text.encode()).hexdigest()


def list_files(root: Path) -> list[tuple[str, str]]:
    """Every regular file under ``root`` (symlinks skipped), sorted by relative path:
    ``(relative path, path)``. Paths are strings: a ``Path`` per file would cost more
    than the listing itself for 100,000 files."""
    if root.is_file():
        return [(root.name, os.fspath(root))]
    out: list[tuple[str, str]] = []
    stack = [(os.fspath(root), "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as entries:
            for e in entries:
                rel = prefix + e.name
                if e.is_dir(follow_symlinks=False):
                    stack.append((e.path, rel + "/"))
                elif e.is_file(follow_symlinks=False):
                    out.append((rel, e.path))
    out.sort()
    return out


class AddingMixin:
    """The add use case of :class:`~mlplane.datasets.service.DataService`."""

    _db: Any
    _chunks: Callable[[], Any]
    _keys: Callable[[], Any]
    _guard: Any
    _project: Any
    get: Any

    def add(
        self,
        p: Principal,
        name: str,
        source: str | os.PathLike[str],
        *,
        project: str = projects.DEFAULT_PROJECT,
        progress: Callable[[int], None] | None = None,
        contract: str | os.PathLike[str] | Mapping[str, Any] | Contract | None = None,
        pii: str | Mapping[str, str] | PiiPolicy | None = None,
        derived_from: str | None = None,
        derivation: Mapping[str, Any] | None = None,
        total: Callable[[int], None] | None = None,
        tables_only: bool = False,
    ) -> AddResult:
        """Store ``source`` (a file or a folder) as the next version of ``name``.

        Args:
            contract: a quality contract (YAML file or text, mapping or ``Contract``);
                a failed blocking expectation raises ``QualityGateFailed`` and stores
                nothing. ``None`` keeps the dataset's current contract, if any.
            pii: a PII policy (``"mask"``, ``"hash"``, ``"drop"``, ``"block"``,
                ``"allow"`` or a per-column mapping with ``"*"`` as the default).
                ``None`` keeps the dataset's current policy; a dataset without one is
                scanned and flagged when PII is found.
            total: told the bytes of the source once listed, for a progress bar
                (``progress`` is then told each step).
            tables_only: the result's version lists only its table files (see
                ``get``): a command line printing a summary spares loading the rest.

        Raises:
            InvalidInput: bad name, missing source, unreadable table, bad contract.
            QualityGateFailed: a blocking expectation failed, or PII was found where the
                policy is ``block``.
        """
        from mlplane.datasets.pii import PiiPolicy, parse_policy

        if "@" in name or not _NAME.match(name):
            raise InvalidInput(
                f"{name!r} is not a dataset name: use letters, digits, '_', '-' and '.', "
                "starting with a letter or digit, without @version"
            )
        root = Path(source)
        if not root.exists():
            raise InvalidInput(f"{root} does not exist")
        files = list_files(root)
        if not files:
            raise InvalidInput(f"{root} holds no files")
        given_contract = None
        if contract is not None:
            from mlplane.datasets.contracts import load_contract

            given_contract = load_contract(contract)
        given_policy = parse_policy(pii) if pii is not None else None
        with self._guard.unit(write=False) as s:
            row = project_rows.find(s, project)
            self._guard.require(
                p,
                Permission.WRITE,
                project=project,
                project_id=row.id if row else None,
                action="dataset.add",
                resource=f"dataset/{name}",
            )
            found = self._newest(s, row.id if row else None, name)
            newest = (
                None
                if found is None
                else _Newest(found.version, found.digest, found.contract, found.pii_policy)
            )
        inherited = given_contract is None and given_policy is None
        contract_obj = given_contract
        if contract_obj is None and newest is not None and newest.contract:
            from mlplane.datasets.contracts import Contract

            contract_obj = Contract.from_json(newest.contract)
        policy = given_policy or (
            PiiPolicy.from_json(newest.pii_policy)
            if newest is not None and newest.pii_policy
            else parse_policy(None)
        )
        if newest is None or not inherited:  # files will be stored: workers may start now
            self._chunks().expect_files(len(files))
        listing = tree_listing(files)
        source_bytes = sum(st.st_size for st in listing.stats)
        if total is not None:
            total(source_bytes)
        if inherited and newest is not None and derived_from is None:
            # An unchanged source is known by the tree cache (one row), else by the hash
            # cache (a row per file): either way, nothing is read.
            key = _tree_key(root, newest.pii_policy)
            unchanged = self._tree_hit(key) == (listing.digest, newest.digest)
            if not unchanged:
                known = _cached_digests(self._db, files, newest.pii_policy, listing)
                unchanged = known is not None and version_digest(known) == newest.digest
                if unchanged:
                    with self._db.write() as s:
                        s.merge(_tree_row(key, listing, newest.digest))
            if unchanged:
                if progress:
                    progress(source_bytes)
                return AddResult(
                    version=self.get(
                        p, f"{name}@{newest.version}", project=project, tables_only=tables_only
                    ),
                    created=False,
                    bytes_in=0,
                    bytes_stored=0,
                    files_rehashed=0,
                )
        chunks = self._chunks()
        # Nothing can refuse or rewrite the files when there is no contract and the policy
        # only detects: then the bytes are stored while the tables are scanned, one core
        # each. Otherwise the pass decides first and nothing is stored on a refusal.
        early = None
        if contract_obj is None and not _may_change_or_refuse(policy):
            pool = ThreadPoolExecutor(1, thread_name_prefix="mlplane-store")
            early = pool.submit(
                store_files, self._db, chunks, files, progress=progress, listing=listing
            )
            pool.shutdown(wait=False)
        with tempfile.TemporaryDirectory(prefix="mlplane-add-") as work:
            try:
                passed = _scan(
                    files,
                    contract=contract_obj,
                    policy=policy,
                    hmac_key=lambda: self._keys().derive(f"mlplane/pii-hmac/{project}"),
                    workdir=Path(work),
                )
                self._gate(name, passed)
            except BaseException:
                if early is not None:  # let the storing finish: its chunks are gc's to take
                    wait([early])
                raise
            if early is not None:
                first = early.result()
                second = store_files(self._db, chunks, [], progress=progress)
            else:
                originals = [(r, f) for r, f in files if r not in _replaced(passed)]
                masked = [(r, passed.tables[r].stored_path) for r in _replaced(passed)]
                first = store_files(self._db, chunks, originals, progress=progress, listing=listing)
                second = store_files(self._db, chunks, masked, progress=progress, use_cache=False)
        stored = {f.rel: f for f in first.files + second.files}
        self._remember_masked(dict(files), second.files, policy)
        tree = None
        if derived_from is None:
            recorded = policy.to_json() if _has_policy(policy) else None
            tree = (_tree_key(root, recorded), listing)
        version_no, created = self._record(
            p,
            project,
            name,
            [stored[r] for r, _ in files],
            passed,
            contract_obj,
            policy,
            derived_from,
            derivation,
            tree,
        )
        return AddResult(
            version=self.get(p, f"{name}@{version_no}", project=project, tables_only=tables_only),
            created=created,
            bytes_in=first.bytes_in + second.bytes_in,
            bytes_stored=first.bytes_stored + second.bytes_stored,
            files_rehashed=first.rehashed + second.rehashed,
        )

    def _tree_hit(self, key: str) -> tuple[str, str] | None:
        """The tree cache's (listing digest, version digest) for ``key``, if any."""
        with self._db.read() as s:
            row = s.get(TreeCacheRow, key)
            return None if row is None else (row.listing, row.version_digest)

    def _remember_masked(
        self, originals: dict[str, str], masked: list[StoredFile], policy: PiiPolicy
    ) -> None:
        """Cache what each original file became under this policy, so an unchanged
        re-add of masked data is recognised without reading it again."""
        if not masked:
            return
        with self._db.write() as s:
            for f in masked:
                src = originals[f.rel]
                st = os.stat(src)
                s.merge(
                    HashCacheRow(
                        path=_policy_key(src, policy.to_json()),
                        size=st.st_size,
                        mtime_ns=st.st_mtime_ns,
                        inode=st.st_ino,
                        digest=f.digest,
                        chunks=chunks_json(f.refs),
                    )
                )

    @staticmethod
    def _gate(name: str, passed: PassResult) -> None:
        blocked = passed.pii_blocked
        if blocked:
            where = "; ".join(
                f"{rel}: column {col!r} ({_kinds(passed, rel, col)})" for rel, col in blocked
            )
            raise QualityGateFailed(
                f"{name}: PII found where the policy is 'block' ({where}). Nothing was "
                "stored. Mask, hash or drop those columns (--pii mask|hash|drop), or allow "
                "them explicitly (--pii COLUMN=allow).",
                pii=[t.pii.to_json() for t in passed.tables.values()],
            )
        if passed.quality is not None and not passed.quality.passed:
            raise QualityGateFailed(
                f"{name}: the quality contract failed; nothing was stored.\n"
                + passed.quality.summary(),
                report=passed.quality.to_json(),
            )

    def _newest(self, s, project_id: int | None, name: str) -> DatasetVersionRow | None:  # type: ignore[no-untyped-def]
        if project_id is None:
            return None
        return s.scalar(  # type: ignore[no-any-return]
            select(DatasetVersionRow)
            .join(DatasetRow, DatasetRow.id == DatasetVersionRow.dataset_id)
            .where(DatasetRow.project_id == project_id, DatasetRow.name == name)
            .order_by(DatasetVersionRow.version.desc())
            .limit(1)
        )

    def _record(
        self,
        p: Principal,
        project: str,
        name: str,
        files: list[StoredFile],
        passed: PassResult,
        contract: Contract | None,
        policy: PiiPolicy,
        derived_from: str | None,
        derivation: Mapping[str, Any] | None,
        tree: tuple[str, Listing] | None = None,
    ) -> tuple[int, bool]:
        """Write the version and its file rows in one transaction; (number, created).

        ``tree`` (tree cache key, listing) is remembered as having become this version's
        digest, in the same transaction."""
        from mlplane.datasets import profile_data as profile_mod

        digest = version_digest([(f.rel, f.size, f.digest) for f in files])
        with self._guard.unit(write=True) as s:
            proj = self._project(s, p, project, Permission.WRITE, "dataset.add", f"dataset/{name}")
            ds = s.scalar(
                select(DatasetRow).where(DatasetRow.project_id == proj.id, DatasetRow.name == name)
            )
            if ds is None:
                ds = DatasetRow(project_id=proj.id, name=name, created_at=now_ms())
                s.add(ds)
                s.flush()
            if tree is not None:
                s.merge(_tree_row(tree[0], tree[1], digest))
            newest = self._newest(s, proj.id, name)
            if newest is not None and newest.digest == digest:
                return newest.version, False
            row = DatasetVersionRow(
                dataset_id=ds.id,
                version=(newest.version + 1) if newest else 1,
                digest=digest,
                size=sum(f.size for f in files),
                file_count=len(files),
                created_at=now_ms(),
                created_by=p.name,
                contract=contract.to_json() if contract is not None else None,
                quality=passed.quality.to_json() if passed.quality is not None else None,
                pii_policy=policy.to_json() if _has_policy(policy) else None,
                pii_unhandled=passed.pii_unhandled,
                derived_from=derived_from,
                derivation=json.dumps(dict(derivation)) if derivation else None,
            )
            s.add(row)
            s.flush()
            rows = []
            for f in files:
                table = passed.tables.get(f.rel)
                rows.append(
                    (
                        row.id,
                        f.rel,
                        f.size,
                        f.digest,
                        chunks_json(f.refs),
                        profile_mod.to_json(table.profile) if table else None,
                        table.pii.to_json() if table else None,
                    )
                )
            # Plain driver statements: a version can list 100,000 files.
            mark = "?" if self._db.is_sqlite else "%s"
            sql = (
                f"INSERT INTO {_FILE_TABLE.name} "
                "(version_id, path, size, digest, chunks, profile, pii) "
                f"VALUES ({', '.join([mark] * 7)})"
            )
            s.connection().exec_driver_sql(sql, rows)
            s.merge(DatasetTagRow(dataset_id=ds.id, tag="latest", version=row.version))
            self._guard.audit(
                s,
                p,
                "dataset.version.create",
                f"dataset/{name}@{row.version}",
                proj.id,
                details={
                    "digest": digest,
                    "files": len(files),
                    "pii_unhandled": passed.pii_unhandled,
                    "pii_policy": policy.to_json() if _has_policy(policy) else None,
                    "quality_passed": None if passed.quality is None else passed.quality.passed,
                },
            )
            return row.version, True


def _scan(
    files: Sequence[tuple[str, str]],
    *,
    contract: Contract | None,
    policy: PiiPolicy,
    hmac_key: Callable[[], bytes],
    workdir: Path,
) -> PassResult:
    """The table pass, or an empty result when there is nothing for it to read (a folder of
    images, say): then neither it nor its libraries are loaded."""
    from mlplane.datasets.passes import PassResult
    from mlplane.datasets.profile_data import table_format

    # By suffix, each one once: a folder of 100,000 images has a handful.
    suffixes = {rel.rpartition(".")[2] for rel, _ in files}
    if contract is None and not any(table_format(f"x.{suffix}") for suffix in suffixes):
        return PassResult()
    from mlplane.datasets.pipeline import scan_tables

    return scan_tables(
        files, contract=contract, policy=policy, hmac_key=hmac_key(), workdir=workdir
    )


@dataclass(frozen=True, slots=True)
class _Newest:
    version: int
    digest: str
    contract: str | None
    pii_policy: str | None


def _replaced(passed: PassResult) -> set[str]:
    return {rel for rel, t in passed.tables.items() if t.replaced}


def _policy_key(path: str | Path, policy_json: str) -> str:
    return _masked_key(cache_keys([path])[0], _policy_tag(policy_json))


def _masked_key(key: str, tag: str) -> str:
    """The hash cache's key for what a file became under a rewriting PII policy: the
    policy first (a real path starts with a separator, so the two cannot collide; no NUL,
    which PostgreSQL text refuses)."""
    return f"pii:{tag}:{key}"


def _policy_tag(policy_json: str) -> str:
    return blake3.blake3(policy_json.encode()).hexdigest()[:16]


def _tree_key(root: Path, policy_json: str | None) -> str:
    """The tree cache's key: the source's real path and the PII policy it is added under."""
    return f"pii:{_policy_tag(policy_json) if policy_json else '-'}:{os.path.realpath(root)}"


def _tree_row(key: str, listing: Listing, digest: str) -> TreeCacheRow:
    return TreeCacheRow(key=key, listing=listing.digest, version_digest=digest, updated_at=now_ms())


def _cached_digests(
    db: Any, files: Sequence[tuple[str, str]], policy_json: str | None, listing: Listing
) -> list[tuple[str, int, str]] | None:
    """(path, size, digest) of every file from the hash cache, or None if any changed.

    The caller compares the result with the newest version, whose rows keep the
    chunks alive, so the chunks need no existence check here.
    """
    resolved, stats = listing.keys, listing.stats
    keys = {k: (rel, st) for k, (rel, _), st in zip(resolved, files, stats, strict=True)}
    tag = _policy_tag(policy_json) if policy_json else None
    masked = {_masked_key(k, tag): k for k in resolved} if tag else {}
    found = cache_rows(db, list(keys) + list(masked))
    for mkey, key in masked.items():
        if mkey in found:  # the file as the policy rewrote it
            found[key] = found[mkey]
    out = []
    for key, (rel, st) in keys.items():
        hit = found.get(key)
        if hit is None:
            return None
        _, size, mtime_ns, inode, digest, chunks = hit
        if (size, mtime_ns, inode) != (st.st_size, st.st_mtime_ns, st.st_ino):
            return None
        # The stored size: the masked copy's, when the policy rewrote the file.
        stored = size if hit[0] == key else sum(n for _, n in json.loads(chunks))
        out.append((rel, stored, digest))
    return out


def _may_change_or_refuse(policy: PiiPolicy) -> bool:
    words = {policy.default, *policy.columns.values()}
    return bool(words & {"mask", "hash", "drop", "block"})


def _has_policy(policy: PiiPolicy) -> bool:
    return policy.default is not None or bool(policy.columns)


def _kinds(passed: PassResult, rel: str, column: str) -> str:
    for c in passed.tables[rel].pii.columns:
        if c.column == column:
            parts = [f"{k}: {n} cells" for k, n in c.kinds.items()]
            if c.name_hint:
                parts.append(f"name hint {c.name_hint}")
            return ", ".join(parts)
    return "PII"
