"""Master key management: rotate, re-wrap, retire, list.

Rotation makes a new master key version current and then re-wraps every secret
wrapped under an older one (chunk data keys, project signing keys, the audit
key): unwrap with the old master key, wrap with the new, in batches of one
transaction each. No data is re-encrypted: blobs never change. Each update is
a compare-and-set on the old wrapped bytes, so a chunk shredded or re-wrapped
meanwhile is left alone, and a rotation stopped midway leaves every secret
under one of two available versions: readable, and finished by
``rotate(resume=True)``. An old version is retired (its bytes deleted) only once
nothing is wrapped under it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import InstrumentedAttribute

from mlplane.db.engine import Database
from mlplane.errors import Conflict, InvalidInput, NotFound
from mlplane.security.access import Guard
from mlplane.security.entities import MasterKeyVersion, Rotation
from mlplane.security.keys import EnvKey, KeyRing, LocalKeyFile
from mlplane.security.principal import Principal

BATCH = 500

_RESOURCE = "master-key"


@dataclass(frozen=True, slots=True)
class WrappedColumn:
    """A column of secrets wrapped under a master key, with its row key and version."""

    kind: str
    key: InstrumentedAttribute[Any]
    version: InstrumentedAttribute[int]
    wrapped: InstrumentedAttribute[Any]


def platform_secrets() -> tuple[WrappedColumn, ...]:
    """Every wrapped secret the platform keeps. Imported here, not at the top: the
    registry imports the security package, and these tables are all this module needs."""
    from mlplane.blobs.tables import ChunkRow
    from mlplane.registry.tables import SigningKeyRow
    from mlplane.security.tables import AuditKeyRow

    return (
        WrappedColumn("chunks", ChunkRow.digest, ChunkRow.key_version, ChunkRow.wrapped_key),
        WrappedColumn(
            "signing_keys",
            SigningKeyRow.project_id,
            SigningKeyRow.key_version,
            SigningKeyRow.wrapped_private,
        ),
        WrappedColumn(
            "audit_keys", AuditKeyRow.key_id, AuditKeyRow.key_version, AuditKeyRow.wrapped_private
        ),
    )


class KeyService:
    """Master key versions, for platform admins only."""

    def __init__(
        self,
        db: Database,
        guard: Guard,
        keys: Callable[[], KeyRing],
        wrapped: Sequence[WrappedColumn] | None = None,
    ) -> None:
        self._db = db
        self._guard = guard
        self._keys = keys
        self._wrapped = tuple(wrapped) if wrapped is not None else platform_secrets()

    def _require(self, p: Principal, action: str) -> None:
        with self._guard.unit(write=False):
            self._guard.require_platform_admin(p, action=action, resource=_RESOURCE)

    def _key_file(self) -> LocalKeyFile | EnvKey:
        provider = self._keys().provider
        if not isinstance(provider, LocalKeyFile | EnvKey):
            raise InvalidInput(f"{type(provider).__name__} master keys cannot be rotated here")
        return provider

    def _counts(self) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = {}
        with self._db.read() as s:
            for col in self._wrapped:
                rows = s.execute(
                    select(col.version, func.count())
                    .where(col.wrapped.is_not(None))
                    .group_by(col.version)
                )
                for version, n in rows:
                    out.setdefault(int(version), {})[col.kind] = int(n)
        return out

    def versions(self, p: Principal) -> list[MasterKeyVersion]:
        """Every master key version, with how many secrets each wraps.

        A version that the database uses but the provider lacks is listed as not
        available: what it wraps cannot be read (a replaced or partly restored key file).
        """
        self._require(p, "keys.list")
        provider = self._keys().provider
        current = provider.current()[0]
        if isinstance(provider, LocalKeyFile):
            known = provider.versions()
        elif isinstance(provider, EnvKey):
            known = [(v, None, None) for v in provider.versions()]
        else:
            known = [(current, None, None)]
        counts = self._counts()
        out = [
            MasterKeyVersion(
                version=v,
                created_at=created,
                current=v == current,
                retired_at=retired,
                available=retired is None,
                wrapped=counts.pop(v, {}),
            )
            for v, created, retired in known
        ]
        out += [
            MasterKeyVersion(v, None, False, None, False, wrapped)
            for v, wrapped in sorted(counts.items())
        ]
        return sorted(out, key=lambda k: k.version)

    def rotate(
        self,
        p: Principal,
        *,
        resume: bool = False,
        batch: int = BATCH,
        on_batch: Callable[[str, int], None] | None = None,
    ) -> Rotation:
        """Make a new master key current and re-wrap every secret under it.

        Args:
            resume: make no new version; re-wrap what an interrupted rotation left
                under older versions (safe to run any time).
            batch: secrets re-wrapped per transaction.
            on_batch: called after each committed batch with the kind and the count
                re-wrapped so far of that kind.

        Raises:
            InvalidInput: the master key comes from the environment.
            PermissionDenied: not a platform admin.
        """
        self._require(p, "keys.rotate")
        key_file = self._key_file()
        if isinstance(key_file, EnvKey):
            # The environment is the operator's to change: they set the new key, we re-wrap.
            version = key_file.current()[0]
            if not resume and version == min(key_file.versions()):
                raise InvalidInput(
                    "the master key comes from MLPLANE_MASTER_KEY: to rotate it, make a new key "
                    "(`openssl rand -base64 32`), set MLPLANE_MASTER_KEY=v"
                    f"{version + 1}:<new key> and MLPLANE_MASTER_KEY_PREVIOUS=v{version}:"
                    "<the current key> (keep older entries), then run `mlplane keys rotate` "
                    "again to re-wrap every data key under the new version"
                )
            resume = True
        if resume or isinstance(key_file, EnvKey):
            version = key_file.current()[0]
        else:
            version = key_file.add_version()
            self._guard.record(p, "keys.rotate", _RESOURCE, None, details={"version": version})
        done = {col.kind: self._rewrap(col, batch, on_batch) for col in self._wrapped}
        self._guard.record(p, "keys.rewrap", _RESOURCE, None, details={"version": version, **done})
        return Rotation(version=version, created=not resume, rewrapped=done)

    def _rewrap(
        self, col: WrappedColumn, batch: int, on_batch: Callable[[str, int], None] | None
    ) -> int:
        ring = self._keys()
        table = col.key.class_.__table__
        pk, ver, wrapped = col.key.key, col.version.key, col.wrapped.key
        # Compare-and-set: a row shredded or re-wrapped since it was read is left as is.
        update = (
            table.update()
            .where(
                table.c[pk] == bindparam("b_key"),
                table.c[ver] == bindparam("b_old_version"),
                table.c[wrapped] == bindparam("b_old"),
            )
            .values({ver: bindparam("b_version"), wrapped: bindparam("b_new")})
        )
        done, after = 0, None
        while True:
            current = ring.provider.current()[0]
            with self._db.write() as s:
                q = (
                    select(col.key, col.version, col.wrapped)
                    .where(col.version != current, col.wrapped.is_not(None))
                    .order_by(col.key)
                    .limit(batch)
                )
                if after is not None:  # rows that failed their compare-and-set are not retried
                    q = q.where(col.key > after)
                rows = s.execute(q).all()
                if not rows:
                    return done
                params = []
                for key, old_version, old in rows:
                    new_version, new = ring.rewrap(old_version, old)
                    params.append(
                        {
                            "b_key": key,
                            "b_old_version": old_version,
                            "b_old": old,
                            "b_version": new_version,
                            "b_new": new,
                        }
                    )
                s.connection().execute(update, params)
            after = rows[-1][0]
            done += len(rows)
            if on_batch is not None:
                on_batch(col.kind, done)

    def retire(self, p: Principal, version: int) -> str | None:
        """Delete an old master key version for good. With keys from the environment,
        which mlplane cannot edit, the checks are made and the returned text says what to
        remove from ``MLPLANE_MASTER_KEY_PREVIOUS``.

        Raises:
            Conflict: it is the current version, or secrets are still wrapped under
                it (finish the rotation: ``rotate(resume=True)``).
            NotFound: no such version in the key file.
        """
        self._require(p, "keys.retire")
        key_file = self._key_file()
        if version == key_file.current()[0]:
            raise Conflict(f"master key version {version} is the current one: rotate first")
        left = self._counts().get(version, {})
        if any(left.values()):
            what = ", ".join(f"{n} {kind}" for kind, n in sorted(left.items()) if n)
            raise Conflict(
                f"master key version {version} still wraps {what}: finish the rotation with "
                "`mlplane keys rotate --resume`, then retire it"
            )
        if isinstance(key_file, EnvKey):
            if version not in key_file.versions():
                raise NotFound(f"master key version {version} is not in the environment")
            self._guard.record(p, "keys.retire", _RESOURCE, None, details={"version": version})
            keep = f" and add {key_file.derive_entry()}" if version == 1 else ""
            return (
                f"nothing is wrapped under master key version {version} any more: remove "
                f"v{version} from MLPLANE_MASTER_KEY_PREVIOUS{keep} (that entry keeps the "
                "project secrets derived from version 1; treat it as a secret)"
            )
        key_file.retire(version)
        self._guard.record(p, "keys.retire", _RESOURCE, None, details={"version": version})
        return None
