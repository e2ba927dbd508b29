"""Shared helpers for the blob-store tests."""

from __future__ import annotations

import blake3

from mlplane.blobs import BlobStore


def b3(data: bytes) -> str:
    return "b3:" + blake3.blake3(data).hexdigest()


def object_path(store: BlobStore, digest: str) -> str:
    """Where the documented layout puts a blob: ``<root>/objects/<2 hex>/<rest>``."""
    hexpart = digest.removeprefix("b3:")
    return f"{store.root}/objects/{hexpart[:2]}/{hexpart[2:]}"


def stored_objects(store: BlobStore) -> list[str]:
    """Every object under ``objects/``, read from the backend itself."""
    store.fs.invalidate_cache()
    return sorted(store.fs.find(f"{store.root}/objects"))
