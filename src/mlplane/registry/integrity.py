"""Integrity of model versions: SHA-256 of every file, a manifest, Ed25519 signatures.

At registration every file's SHA-256 goes into a canonical JSON manifest whose
own SHA-256 identifies the version's content. When the project has a signing
key, the manifest digest is signed with Ed25519 (the private key is kept only
wrapped by the master key). On every load the files are hashed again and
compared, and the signature is verified when the project has a key; a project
can require signatures, and then an unsigned version is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from mlplane.errors import TamperedArtifact
from mlplane.registry.entities import ModelFile

_BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def list_files(folder: Path) -> list[ModelFile]:
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out.append(
                ModelFile(p.relative_to(folder).as_posix(), p.stat().st_size, sha256_file(p))
            )
    return out


def manifest_digest(files: Sequence[ModelFile], flavor: str, info: dict[str, Any]) -> str:
    """SHA-256 of the canonical manifest: every file's path, size and digest, and the flavor."""
    body = {
        "files": [[f.path, f.size, f.sha256] for f in sorted(files, key=lambda f: f.path)],
        "flavor": flavor,
        "info": info,
    }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_files(folder: Path, files: Sequence[ModelFile], ref: str) -> None:
    """Hash every file again; any difference (or a missing file) is tampering."""
    for f in files:
        path = folder / f.path
        if not path.is_file():
            raise TamperedArtifact(f"{ref}: file {f.path} is missing from the stored version")
        got = sha256_file(path)
        if got != f.sha256:
            raise TamperedArtifact(
                f"{ref}: {f.path} has SHA-256 {got[:16]}…, registered {f.sha256[:16]}…: "
                "the stored model was modified; it will not be loaded"
            )


def new_key() -> tuple[bytes, bytes]:
    """A fresh Ed25519 key pair as raw bytes: (private 32, public 32)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, public


def key_id(public: bytes) -> str:
    return "ed25519:" + hashlib.sha256(public).hexdigest()[:16]


def sign(private: bytes, digest: str) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(private).sign(digest.encode())


def verify(public: bytes, digest: str, signature: bytes, ref: str) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, digest.encode())
    except InvalidSignature:
        raise TamperedArtifact(
            f"{ref}: the manifest signature does not verify under the project key: "
            "the version was altered or signed by another key"
        ) from None
