"""Platform layer: the content-addressed blob store on fsspec."""

from mlplane.blobs.store import BlobStore, hash_file

__all__ = ["BlobStore", "hash_file"]
