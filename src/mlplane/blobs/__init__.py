"""Platform layer: the content-addressed blob store on fsspec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlplane._lazy import lazy_attrs

if TYPE_CHECKING:
    from mlplane.blobs.store import BlobStore, hash_file

__all__ = ["BlobStore", "hash_file"]

# Loaded on first use: the chunk sealer's worker processes import ``mlplane.blobs._seal``
# alone, without fsspec.
__getattr__ = lazy_attrs(__name__, {"BlobStore": "store", "hash_file": "store"})
