"""Garbage collection while writers run (every recorded version stays readable), and the
expiry of abandoned multipart artifact uploads."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mlplane.blobs.tables import ChunkRow
from mlplane.config import load_settings
from mlplane.errors import InvalidInput, NotFound
from mlplane.gc import MAX_GRACE_S, collect_garbage
from mlplane.security import local_admin
from mlplane.services import Services
from mlplane.tracking.tables import ArtifactUploadPartRow, ArtifactUploadRow

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


def _upload_part(svc: Services, upload_id: str, number: int, folder: Path) -> str:
    part = folder / f"{upload_id}-{number}.bin"
    part.write_bytes(os.urandom(64_000))
    return svc.tracking.put_upload_part(upload_id, number, part)


def test_gc_expires_abandoned_multipart_uploads(tmp_path: Path) -> None:
    svc = Services.from_settings(load_settings(home=tmp_path / "home", upload_expiry_s=3600))
    try:
        exp = svc.tracking.create_experiment(ME, "uploads")
        run_id = svc.tracking.create_run(ME, exp).info.run_id
        abandoned = svc.tracking.create_upload(ME, "run", run_id, "big/abandoned.bin", 2)
        old_parts = [_upload_part(svc, abandoned, n, tmp_path) for n in (1, 2)]
        live = svc.tracking.create_upload(ME, "run", run_id, "big/live.bin", 1)
        live_part = _upload_part(svc, live, 1, tmp_path)
        with svc.db.write() as s:  # started two hours ago: past the hour of expiry
            s.execute(
                update(ArtifactUploadRow)
                .where(ArtifactUploadRow.id == abandoned)
                .values(created_at=int(time.time() * 1000) - 2 * 3600 * 1000)
            )

        dry = collect_garbage(svc, ME, grace_s=0, dry_run=True)
        assert (dry.uploads_expired, dry.blobs_deleted) == (1, 2)
        assert all(svc.blobs.exists(d) for d in old_parts)

        report = collect_garbage(svc, ME, grace_s=0)
        assert (report.uploads_expired, report.blobs_deleted) == (1, 2)
        assert not any(svc.blobs.exists(d) for d in old_parts)
        with pytest.raises(NotFound):
            _upload_part(svc, abandoned, 1, tmp_path)
        with pytest.raises(NotFound):
            svc.tracking.complete_upload(ME, abandoned, [(1, old_parts[0]), (2, old_parts[1])])

        # The upload still within its expiry keeps its part and completes.
        assert svc.blobs.exists(live_part)
        info = svc.tracking.complete_upload(ME, live, [(1, live_part)])
        assert info.path == "big/live.bin"
        assert collect_garbage(svc, ME, grace_s=0).uploads_expired == 0
        with svc.db.read() as s:
            assert s.scalars(select(ArtifactUploadPartRow.upload_id)).all() == []
    finally:
        svc.close()


def test_gc_keeps_the_chunks_of_registered_models(tmp_path: Path) -> None:
    """Model versions store their files as chunks too: no dataset lists them, and they
    must survive any grace period."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import mlplane

    x = np.random.default_rng(0).normal(size=(50, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    mlplane.set_tracking_uri(str(tmp_path / "home"))
    svc = Services.from_settings(load_settings(home=tmp_path / "home"))
    try:
        mlplane.registry.register("kept", model, input_example=x[:5])
        with svc.db.write() as s:  # older than any grace period
            s.execute(update(ChunkRow).values(created_at=0, seen_at=None))
        report = collect_garbage(svc, ME, grace_s=0)
        assert report.chunks_deleted == 0 and report.referenced_chunks > 0
        shutil.rmtree(tmp_path / "home" / "cache", ignore_errors=True)  # load from the store
        loaded = mlplane.registry.load("kept@1")
        assert (loaded.predict(x[:5]) == model.predict(x[:5])).all()
    finally:
        mlplane.set_tracking_uri(None)
        svc.close()


@pytest.mark.parametrize("grace_s", [-1.0, MAX_GRACE_S * 2, 1e306, float("inf"), float("nan")])
def test_gc_refuses_a_grace_period_out_of_range(tmp_path: Path, grace_s: float) -> None:
    """Found by tests/security/test_fuzz.py: a grace of 1e306 s made the cutoff infinite,
    and ``POST /api/v1/gc`` answered 500 where the caller's input was at fault."""
    svc = Services.from_settings(load_settings(home=tmp_path / "home"))
    try:
        with pytest.raises(InvalidInput, match="grace_s"):
            collect_garbage(svc, ME, grace_s=grace_s, dry_run=True)
        assert collect_garbage(svc, ME, grace_s=MAX_GRACE_S, dry_run=True).dry_run
    finally:
        svc.close()


def test_gc_keeps_captured_payloads(tmp_path: Path) -> None:
    """Captured payload files are chunks that no version lists: gc must keep them."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlplane.serving.capture import CaptureRecord, CaptureWriter, read_captures

    x = np.random.default_rng(0).normal(size=(50, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    svc = Services.from_settings(load_settings(home=tmp_path / "home"))
    try:
        svc.registry.register(ME, "m", model, input_example=x[:5])
        d = svc.deployments.create(ME, "d", "m@1")
        writer = CaptureWriter(svc, worker_id="w")
        now = int(time.time() * 1000)
        for i in range(20):
            writer.submit(
                d.deployment_id,
                CaptureRecord(
                    f"r1-{i:04x}", now, "d", 1, "live", 1.0, 200, [{"x0": float(i)}], [i % 2]
                ),
            )
        writer.close()
        with svc.db.write() as s:  # older than any grace period
            s.execute(update(ChunkRow).values(created_at=0, seen_at=None))
        assert collect_garbage(svc, ME, grace_s=0).chunks_deleted == 0
        assert read_captures(svc, ME, "d").num_rows == 20
    finally:
        svc.close()
