"""Crypto-shredding dataset and model versions: blobs stay, keys go, shared chunks live."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from mlplane.blobs.tables import ChunkRow
from mlplane.errors import NotFound, PermissionDenied
from mlplane.security import Principal, local_admin
from mlplane.security.tables import AuditEventRow
from mlplane.services import Services

ME = local_admin("tester")
WRITER = Principal(name="w", roles={"default": "contributor"}, source="test")


def _chunks_of(svc: Services, ref: str) -> set[str]:
    v = svc.data.get(ME, ref)
    with svc.db.read() as s:
        from mlplane.datasets.tables import DatasetFileRow, DatasetRow, DatasetVersionRow

        rows = s.scalars(
            select(DatasetFileRow.chunks)
            .join(DatasetVersionRow, DatasetVersionRow.id == DatasetFileRow.version_id)
            .join(DatasetRow, DatasetRow.id == DatasetVersionRow.dataset_id)
            .where(DatasetRow.name == v.name, DatasetVersionRow.version == v.version)
        )
        return {d for c in rows for d, _ in json.loads(c)}


def test_shredded_dataset_version_is_unreadable_even_from_a_backup(
    services: Services, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "shared.bin").write_bytes(os.urandom(400_000))
    (src / "secret.txt").write_text("patient 17: positive\n" * 50)
    services.data.add(ME, "ds", src)
    (src / "secret.txt").unlink()
    services.data.add(ME, "ds", src)  # v2 shares shared.bin's chunks with v1
    only_v1 = _chunks_of(services, "ds@1") - _chunks_of(services, "ds@2")
    assert only_v1
    with services.db.read() as s:
        rows = {r.digest: r for r in s.execute(select(*ChunkRow.__table__.columns))}
    backup = {d: _raw(services, rows[d]) for d in only_v1}  # a copy of the blob store

    with pytest.raises(PermissionDenied, match="'admin'"):
        services.data.delete_version(WRITER, "ds@1", shred=True)
    shredded = services.data.delete_version(ME, "ds@1", shred=True)

    assert shredded == len(only_v1)
    with services.db.read() as s:
        left = set(s.scalars(select(ChunkRow.digest)))
    assert not (only_v1 & left)  # the wrapped keys are gone from the database
    with services.db.read() as s:
        keys = [
            services.keys.unwrap(r.key_version, r.wrapped_key)
            for r in s.execute(select(ChunkRow.key_version, ChunkRow.wrapped_key))
        ]
    for digest, stored in backup.items():
        assert _raw(services, rows[digest]) == stored  # still on disk, untouched
        aad = digest.encode() + (b"|zstd" if rows[digest].compressed else b"|raw")
        for key in keys:  # no key left in the database opens it
            with pytest.raises(InvalidTag):
                AESGCM(key).decrypt(stored[:12], stored[12:], aad)
    with pytest.raises(NotFound):
        services.data.get(ME, "ds@1")
    out = services.data.materialize(ME, "ds@2", tmp_path / "v2")
    assert (out / "shared.bin").read_bytes() == (src / "shared.bin").read_bytes()
    with services.db.read() as s:
        events = s.execute(
            select(AuditEventRow.outcome, AuditEventRow.details).where(
                AuditEventRow.action == "dataset.shred"
            )
        ).all()
    assert sorted(e.outcome for e in events) == ["denied", "ok"]
    event = next(e for e in events if e.outcome == "ok")
    assert json.loads(event.details) == {"shredded_chunks": len(only_v1)}

    services.data.add(ME, "ds2", src.parent / "src")  # re-adding the same bytes still works
    (src / "secret.txt").write_text("patient 17: positive\n" * 50)
    services.data.add(ME, "ds3", src)  # the shredded content, stored afresh
    assert (services.data.materialize(ME, "ds3@1", tmp_path / "v3") / "secret.txt").exists()


def _raw(svc: Services, row: Any) -> bytes:
    if row.pack_offset is None:
        return svc.blobs.read_bytes(row.blob)
    return svc.blobs.read_range(row.blob, row.pack_offset, row.stored_size)


def test_delete_without_shred_keeps_chunks_and_shred_spares_models(
    services: Services, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a" * 10_000)
    services.data.add(ME, "ds", src)
    (src / "a.txt").write_text("b" * 10_000)
    services.data.add(ME, "ds", src)
    before = _chunks_of(services, "ds@1")
    assert services.data.delete_version(WRITER, "ds@1") == 0
    with services.db.read() as s:
        assert before <= set(s.scalars(select(ChunkRow.digest)))  # left for gc
    assert services.data.get(ME, "ds@latest").version == 2

    x = np.arange(40, dtype=float).reshape(20, 2)
    model = LogisticRegression().fit(x, [0, 1] * 10)
    services.registry.register(ME, "m", model)
    services.registry.register(ME, "m", model)  # the same model file: its chunks shared
    with services.db.read() as s:
        total = len(services.registry.referenced_chunks(session=s))
    # Only m@1's own files (its metadata) go; the shared model file stays for m@2.
    assert 0 < services.registry.delete_version(ME, "m@1", shred=True) < total
    shutil.rmtree(services.settings.home / "cache" / "models", ignore_errors=True)
    services.registry.load(ME, "m@2")
    assert services.registry.delete_version(ME, "m@2", shred=True) > 0
    with pytest.raises(NotFound):
        services.registry.load(ME, "m@2")


def test_cli_rm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mlplane.cli.main import app

    monkeypatch.setenv("MLPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLPLANE_MASTER_KEY", raising=False)
    (tmp_path / "a.txt").write_text("data\n")
    runner = CliRunner()
    assert runner.invoke(app, ["data", "add", "ds", str(tmp_path / "a.txt")]).exit_code == 0
    done = runner.invoke(app, ["data", "rm", "ds@1", "--shred"])
    assert done.exit_code == 0, done.output
    assert "shredded 1 chunks" in done.output
    gone = runner.invoke(app, ["data", "show", "ds@1"])
    assert gone.exit_code == 1
    remote = runner.invoke(app, ["--uri", "http://localhost:1", "models", "rm", "m@1"])
    assert remote.exit_code == 1 and "http(s) --uri" in remote.output
