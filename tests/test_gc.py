"""Garbage collection while writers run: every recorded version stays readable."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from sqlalchemy import update

from mlplane.blobs.tables import ChunkRow
from mlplane.config import load_settings
from mlplane.gc import collect_garbage
from mlplane.security import local_admin
from mlplane.services import Services

ME = local_admin("tester")


def test_gc_racing_adds_that_reuse_old_orphan_chunks(tmp_path: Path) -> None:
    svc = Services.from_settings(load_settings(home=tmp_path / "home"))
    try:
        files = []
        for i in range(6):
            f = tmp_path / f"f{i}.bin"
            f.write_bytes(os.urandom(1_500_000))
            svc.chunks.put_file(f)  # orphans: stored, listed by no version
            files.append(f)
        with svc.db.write() as s:  # old enough for any grace period below
            s.execute(update(ChunkRow).values(created_at=0, seen_at=None))
        stop = threading.Event()
        errors: list[BaseException] = []

        def collector() -> None:
            try:
                while not stop.is_set():
                    collect_garbage(svc, ME, grace_s=0.5)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        thread = threading.Thread(target=collector)
        thread.start()
        try:
            for i, f in enumerate(files):  # each add reuses (or re-stores) the orphans
                svc.data.add(ME, f"d{i}", f)
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join()
        assert not errors, errors
        collect_garbage(svc, ME, grace_s=0)  # and once more after everything settled
        for i, f in enumerate(files):
            out = svc.data.materialize(ME, f"d{i}@1", tmp_path / f"out{i}")
            assert (out / f.name).read_bytes() == f.read_bytes()
    finally:
        svc.close()
