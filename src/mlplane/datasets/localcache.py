"""A bounded local cache of decrypted dataset versions, for reading them as files.

SQL and ``Dataset.path()`` need plain files. Each version is fetched once into
a folder named by its digest (content-addressed, so it never goes stale),
built in a temporary folder and renamed into place, so a crash or a concurrent
reader never sees half a version. When the cache grows past its bound, the
least recently used versions are removed; the one just asked for is kept.
The cache folder is private to the user (mode 0700): it holds decrypted data.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

_DONE = ".complete"


class VersionCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path(self, digest: str, fetch: Callable[[Path], object], *, refetch: bool = False) -> Path:
        """The folder holding the version with ``digest``; ``fetch(folder)`` fills it once.

        With ``refetch``, ``fetch`` runs even when the version is cached (and its copy is
        dropped): for versions the store must authorize and audit at every read, such as
        those with unhandled PII, which a cached copy would otherwise hand out unchecked.
        """
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        folder = self.root / digest.replace(":", "-")
        done = folder / _DONE
        if done.exists() and not refetch:
            os.utime(done)  # recently used
            return folder
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            fetch(tmp)
            size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
            (tmp / _DONE).write_text(str(size))
            try:
                os.rename(tmp, folder)
            except OSError:  # another process finished the same version first
                if not done.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.evict(keep=folder)
        return folder

    def evict(self, keep: Path | None = None) -> int:
        """Remove least recently used versions until the cache fits; bytes freed."""
        entries = []
        for folder in self.root.iterdir():
            done = folder / _DONE
            if folder.is_dir() and done.exists():
                try:
                    entries.append((done.stat().st_mtime, int(done.read_text()), folder))
                except (OSError, ValueError):
                    continue
            elif folder.name.startswith(".tmp-") and time.time() - folder.stat().st_mtime > 86400:
                shutil.rmtree(folder, ignore_errors=True)  # left by a crashed fetch
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, folder in sorted(entries):
            if total <= self.max_bytes:
                break
            if keep is not None and folder == keep:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            freed += size
        return freed
