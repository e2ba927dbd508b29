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
import json
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from mlplane.errors import InvalidInput, TamperedArtifact

KEY_BYTES = 32


class KeyProvider(abc.ABC):
    """Where master keys come from."""

    @abc.abstractmethod
    def current(self) -> tuple[int, bytes]:
        """The version and bytes of the master key new data keys are wrapped with."""

    @abc.abstractmethod
    def get(self, version: int) -> bytes:
        """A master key by version (older versions stay readable until retired)."""


class EnvKey(KeyProvider):
    """One master key given as base64 in ``MLPLANE_MASTER_KEY`` (version 1)."""

    def __init__(self, encoded: str) -> None:
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise InvalidInput("MLPLANE_MASTER_KEY must be base64 (of 32 random bytes)") from None
        if len(key) != KEY_BYTES:
            raise InvalidInput(
                f"MLPLANE_MASTER_KEY decodes to {len(key)} bytes; it must be 32 random "
                "bytes, base64-encoded (e.g. the output of `openssl rand -base64 32`)"
            )
        self._key = key

    def current(self) -> tuple[int, bytes]:
        return 1, self._key

    def get(self, version: int) -> bytes:
        if version != 1:
            raise TamperedArtifact(
                f"master key version {version} is not available from MLPLANE_MASTER_KEY"
            )
        return self._key


class LocalKeyFile(KeyProvider):
    """Versioned master keys in a JSON file readable by its owner only (0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            self._create()
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise InvalidInput(
                f"the master key file {path} is readable by others (mode {mode:o}): chmod 600 it"
            )
        data = json.loads(path.read_text())
        self._current = int(data["current"])
        self._keys = {int(v): base64.b64decode(k) for v, k in data["keys"].items()}

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"current": 1, "keys": {"1": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}}
        ).encode()
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.path)  # fails if another process created it first: keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    def current(self) -> tuple[int, bytes]:
        return self._current, self._keys[self._current]

    def get(self, version: int) -> bytes:
        try:
            return self._keys[version]
        except KeyError:
            raise TamperedArtifact(
                f"master key version {version} is not in {self.path}: was the key file replaced?"
            ) from None


def provider_for(home: Path, env_key: str | None) -> KeyProvider:
    """The environment's key when set, else the key file under ``home``."""
    return EnvKey(env_key) if env_key else LocalKeyFile(home / "master.key")


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
        master = self._provider.get(1)
        return HKDF(
            algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=purpose.encode()
        ).derive(master)

    def unwrap(self, version: int, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._provider.get(version), wrapped)
        except InvalidUnwrap:
            raise TamperedArtifact("a data key does not unwrap under its master key") from None
