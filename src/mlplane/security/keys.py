"""Master keys and envelope encryption.

Every stored object gets its own random data key; only its wrapped form
(AES key wrap, RFC 3394, under a master key) is kept, in the metadata
database. The master key comes from a :class:`KeyProvider`: a key file under
``MLPLANE_HOME`` (created on first use, mode 0600) or ``MLPLANE_MASTER_KEY``.
Losing the master key makes every encrypted object unreadable: back it up.
Master keys are versioned so they can be rotated (re-wrapping data keys,
never re-encrypting data).
"""

from __future__ import annotations

import abc
import base64
import binascii
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from mlplane.errors import Conflict, InvalidInput, NotFound, TamperedArtifact

KEY_BYTES = 32


class KeyProvider(abc.ABC):
    """Where master keys come from."""

    @abc.abstractmethod
    def current(self) -> tuple[int, bytes]:
        """The version and bytes of the master key new data keys are wrapped with."""

    @abc.abstractmethod
    def get(self, version: int) -> bytes:
        """A master key by version (older versions stay readable until retired)."""

    def derivation_prk(self) -> bytes:
        """The HKDF pseudorandom key that per-purpose secrets are expanded from: that of
        master key version 1, so derived secrets survive rotation and retirement."""
        return _extract(self.get(1))


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise InvalidInput(f"{where} must be base64 (of 32 random bytes)") from None
    if len(key) != KEY_BYTES:
        raise InvalidInput(
            f"{where} decodes to {len(key)} bytes; it must be 32 random "
            "bytes, base64-encoded (e.g. the output of `openssl rand -base64 32`)"
        )
    return key


def _versioned(text: str, where: str) -> tuple[int, str]:
    """``v2:BASE64`` as (2, BASE64); plain ``BASE64`` is version 1."""
    head, sep, rest = text.strip().partition(":")
    if not sep:
        return 1, text
    if not (head[:1] in ("v", "V") and head[1:].isdigit() and int(head[1:]) >= 1):
        raise InvalidInput(f"{where}: {head!r} is not a key version; write v2:BASE64")
    return int(head[1:]), rest


class EnvKey(KeyProvider):
    """Master keys from the environment: the current one in ``MLPLANE_MASTER_KEY``
    (``BASE64``, which is version 1, or ``vN:BASE64``) and older versions, kept to
    unwrap what is still wrapped under them, in ``MLPLANE_MASTER_KEY_PREVIOUS``
    (``v1:BASE64,v2:BASE64``). Once version 1 is retired, the project secrets derived
    from it need ``derive:BASE64`` there (``mlplane keys retire 1`` prints it)."""

    def __init__(self, encoded: str, previous: str | None = None) -> None:
        version, text = _versioned(encoded, "MLPLANE_MASTER_KEY")
        self._current = version
        self._keys = {version: _decode_key(text, "MLPLANE_MASTER_KEY")}
        self._derive: bytes | None = None
        for item in (previous or "").split(","):
            if not item.strip():
                continue
            if item.strip().startswith("derive:"):
                self._derive = base64.b64decode(item.strip()[len("derive:") :])
                continue
            where = "MLPLANE_MASTER_KEY_PREVIOUS"
            v, body = _versioned(item, where)
            if ":" not in item:
                raise InvalidInput(f"{where}: write each key as vN:BASE64")
            if v >= version:
                raise InvalidInput(
                    f"{where} holds version {v}, not older than the current version {version} "
                    "in MLPLANE_MASTER_KEY"
                )
            self._keys[v] = _decode_key(body, where)

    def current(self) -> tuple[int, bytes]:
        return self._current, self._keys[self._current]

    def get(self, version: int) -> bytes:
        key = self._keys.get(version)
        if key is None:
            raise TamperedArtifact(
                f"master key version {version} is not available from MLPLANE_MASTER_KEY or "
                "MLPLANE_MASTER_KEY_PREVIOUS"
            )
        return key

    def versions(self) -> list[int]:
        return sorted(self._keys)

    def derivation_prk(self) -> bytes:
        if 1 in self._keys:
            return super().derivation_prk()
        if self._derive is None:
            raise InvalidInput(
                "master key version 1 is retired: add the derive:BASE64 entry that "
                "`mlplane keys retire 1` printed to MLPLANE_MASTER_KEY_PREVIOUS"
            )
        return self._derive

    def derive_entry(self) -> str:
        """The ``derive:BASE64`` entry that keeps derived secrets once version 1 is gone."""
        return "derive:" + _b64(self.derivation_prk())


_RECHECK_S = 1.0  # how often current() looks for a rotation made by another process


class LocalKeyFile(KeyProvider):
    """Versioned master keys in a JSON file readable by its owner only (0600).

    The format: ``{"current": 2, "keys": {"1": b64, "2": b64}, "created": {"2": ms},
    "retired": {"1": ms}, "derive_prk": b64}``. Every field but ``current`` and ``keys``
    is optional, so a file written before rotation existed (one key) reads as version 1.
    The file is re-read when it changes, so a running server picks up a rotation made by
    ``mlplane keys rotate`` in another process.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            self._create()
        self._stamp: tuple[int, int] | None = None
        self._data: dict[str, Any] = {}
        self._reload()
        self._checked = time.monotonic()

    def _reload(self) -> None:
        st = self.path.stat()
        if (st.st_mtime_ns, st.st_ino) == self._stamp:
            return
        mode = st.st_mode & 0o777
        if mode & 0o077:
            raise InvalidInput(
                f"the master key file {self.path} is readable by others (mode {mode:o}): "
                "chmod 600 it"
            )
        data = json.loads(self.path.read_text())
        # Keys before the current number: a reader in another thread never gets a
        # number whose key it cannot find.
        self._keys = {int(v): base64.b64decode(k) for v, k in data["keys"].items()}
        self._current = int(data["current"])
        self._data, self._stamp = data, (st.st_mtime_ns, st.st_ino)

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"current": 1, "keys": {"1": _b64(secrets.token_bytes(KEY_BYTES))}}
        tmp = self._write_tmp(body)
        try:
            os.link(tmp, self.path)  # fails if another process created it first: keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    def _write_tmp(self, body: dict[str, Any]) -> Path:
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, json.dumps(body, indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return tmp

    @contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        """Read, change and atomically replace the file, one process at a time."""
        lock = os.open(
            self.path.with_name(f".{self.path.name}.lock"), os.O_CREAT | os.O_RDWR, 0o600
        )
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._stamp = None
            self._reload()  # another process may have changed it since we read it
            data = json.loads(json.dumps(self._data))
            yield data
            os.replace(self._write_tmp(data), self.path)
            self._stamp = None
            self._reload()
            self._checked = time.monotonic()
        finally:
            os.close(lock)  # closing releases the lock

    def current(self) -> tuple[int, bytes]:
        # Every new data key asks (one per chunk: 100,000 for a folder of small files), so
        # the file is checked for a rotation by another process at most once a second; a
        # key wrapped under the previous version meanwhile still unwraps, and `keys retire`
        # refuses while any does.
        now = time.monotonic()
        if now - self._checked >= _RECHECK_S:
            self._reload()
            self._checked = now
        return self._current, self._keys[self._current]

    def get(self, version: int) -> bytes:
        if version not in self._keys:
            self._reload()
        try:
            return self._keys[version]
        except KeyError:
            raise TamperedArtifact(
                f"master key version {version} is not in {self.path}: was the key file "
                "replaced, or the version retired?"
            ) from None

    def derivation_prk(self) -> bytes:
        self._reload()
        if 1 in self._keys:
            return super().derivation_prk()
        return base64.b64decode(self._data["derive_prk"])

    def versions(self) -> list[tuple[int, int | None, int | None]]:
        """Every version ever made: (version, created ms, retired ms); None when unknown
        (the first key predates the record) or not retired."""
        self._reload()
        created = {int(v): int(t) for v, t in self._data.get("created", {}).items()}
        retired = {int(v): int(t) for v, t in self._data.get("retired", {}).items()}
        return [(v, created.get(v), retired.get(v)) for v in sorted({*self._keys, *retired})]

    def add_version(self) -> int:
        """Make a new random master key the current one; returns its version."""
        with self._editing() as data:
            known = [int(v) for v in (*data["keys"], *data.get("retired", {}))]
            version = max(known) + 1  # a retired number is never given out again
            data["keys"][str(version)] = _b64(secrets.token_bytes(KEY_BYTES))
            data.setdefault("created", {})[str(version)] = int(time.time() * 1000)
            data["current"] = version
        return version

    def retire(self, version: int) -> None:
        """Delete an old version's key bytes for good (the caller checked nothing needs it)."""
        with self._editing() as data:
            if version == int(data["current"]):
                raise Conflict(f"master key version {version} is the current one")
            if str(version) not in data["keys"]:
                raise NotFound(f"master key version {version} is not in {self.path}")
            if version == 1 and "derive_prk" not in data:
                # Project secrets are derived from version 1 (KeyRing.derive): keep only the
                # one-way HKDF extract of it, which derives them but unwraps nothing.
                data["derive_prk"] = _b64(_extract(base64.b64decode(data["keys"]["1"])))
            del data["keys"][str(version)]
            data.setdefault("retired", {})[str(version)] = int(time.time() * 1000)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _extract(master: bytes) -> bytes:
    """HKDF-Extract with no salt (RFC 5869: a salt of zeros), as HKDF itself does."""
    return hmac.new(bytes(32), master, hashlib.sha256).digest()


def provider_for(home: Path, env_key: str | None, previous: str | None = None) -> KeyProvider:
    """The environment's keys when set, else the key file under ``home``."""
    return EnvKey(env_key, previous) if env_key else LocalKeyFile(home / "master.key")


class KeyRing:
    """Makes, wraps and unwraps data keys with the provider's master keys."""

    def __init__(self, provider: KeyProvider) -> None:
        self._provider = provider

    def new_data_key(self) -> tuple[bytes, int, bytes]:
        """A fresh data key, the master version and the wrapped form to store."""
        version, master = self._provider.current()
        key = secrets.token_bytes(KEY_BYTES)
        return key, version, aes_key_wrap(master, key)

    def wrap(self, secret: bytes) -> tuple[int, bytes]:
        """Wrap a secret of our own (e.g. a signing key) under the current master key."""
        version, master = self._provider.current()
        return version, aes_key_wrap(master, secret)

    def derive(self, purpose: str) -> bytes:
        """A 32-byte secret for one purpose (e.g. a project's PII pseudonyms), derived from
        the first master key with HKDF-SHA256, so it stays stable when the master key rotates."""
        # HKDF = Extract then Expand; the extract is kept when version 1 is retired.
        prk = self._provider.derivation_prk()
        return HKDFExpand(
            algorithm=hashes.SHA256(), length=KEY_BYTES, info=purpose.encode()
        ).derive(prk)

    @property
    def provider(self) -> KeyProvider:
        return self._provider

    def rewrap(self, version: int, wrapped: bytes) -> tuple[int, bytes]:
        """The same secret, wrapped under the current master key instead of ``version``."""
        return self.wrap(self.unwrap(version, wrapped))

    def unwrap(self, version: int, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._provider.get(version), wrapped)
        except InvalidUnwrap:
            raise TamperedArtifact("a data key does not unwrap under its master key") from None
