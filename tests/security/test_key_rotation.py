"""Master key rotation: re-wrap every secret, resume after a crash, retire old versions."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import func, select
from typer.testing import CliRunner

from mlplane.blobs.tables import ChunkRow
from mlplane.cli.main import app
from mlplane.config import load_settings
from mlplane.errors import Conflict, InvalidInput, PermissionDenied
from mlplane.registry.tables import SigningKeyRow
from mlplane.security import Principal, local_admin
from mlplane.security.keys import KeyRing, LocalKeyFile
from mlplane.security.tables import AuditKeyRow
from mlplane.services import Services

ME = local_admin("tester")


def _store(svc: Services, root: Path) -> dict[str, bytes]:
    """Two dataset versions (many small packed chunks and a large one), a signed model
    and an audit checkpoint: every kind of wrapped secret."""
    (root / "d").mkdir(parents=True)
    for i in range(40):
        (root / "d" / f"f{i}.txt").write_text(f"row {i}\n" * (i + 1))
    (root / "d" / "big.bin").write_bytes(os.urandom(3 << 20))
    svc.data.add(ME, "ds", root / "d")
    (root / "d" / "f0.txt").write_text("changed\n")
    svc.data.add(ME, "ds", root / "d")
    svc.registry.create_signing_key(ME)
    x = np.arange(40, dtype=float).reshape(20, 2)
    svc.registry.register(ME, "m", LogisticRegression().fit(x, [0, 1] * 10))
    svc.audit.checkpoint(ME)
    return {f.name: f.read_bytes() for f in (root / "d").iterdir()}


def _read_all(svc: Services, out: Path) -> None:
    for version in ("ds@1", "ds@2"):
        svc.data.materialize(ME, version, out / version)
    assert (out / "ds@2" / "f0.txt").read_text() == "changed\n"
    shutil.rmtree(svc.settings.home / "cache" / "models", ignore_errors=True)  # read chunks
    svc.registry.load(ME, "m@1")  # unwraps the signing key and verifies the signature
    assert svc.audit.verify(ME).ok  # unwraps the audit key


def _by_version(svc: Services) -> dict[int, int]:
    out: dict[int, int] = {}
    with svc.db.read() as s:
        for col in (ChunkRow, SigningKeyRow, AuditKeyRow):
            wrapped = col.wrapped_key if col is ChunkRow else col.wrapped_private
            q = select(col.key_version, func.count()).where(wrapped.is_not(None))
            for v, n in s.execute(q.group_by(col.key_version)):
                out[v] = out.get(v, 0) + n
    return out


def test_rotate_read_retire_read(services: Services, tmp_path: Path) -> None:
    originals = _store(services, tmp_path)
    pseudonym_secret = services.keys.derive("mlplane/pii-hmac/default")
    total = _by_version(services)[1]
    batches: list[tuple[str, int]] = []

    done = services.master_keys.rotate(ME, batch=7, on_batch=lambda k, n: batches.append((k, n)))

    assert done.version == 2 and done.created
    assert sum(done.rewrapped.values()) == total
    assert done.rewrapped["signing_keys"] == 1 and done.rewrapped["audit_keys"] == 1
    assert len([b for b in batches if b[0] == "chunks"]) > 1  # in several transactions
    assert _by_version(services) == {2: total}
    _read_all(services, tmp_path / "after-rotate")
    assert (tmp_path / "after-rotate" / "ds@2" / "big.bin").read_bytes() == originals["big.bin"]

    with pytest.raises(Conflict, match="current"):
        services.master_keys.retire(ME, 2)
    services.master_keys.retire(ME, 1)
    key_file = json.loads((services.settings.home / "master.key").read_text())
    assert set(key_file["keys"]) == {"2"} and "1" in key_file["retired"]
    with pytest.raises(Exception, match="version 1"):
        services.keys.provider.get(1)

    # A fresh process (new provider, new ring) reads everything with version 2 alone.
    fresh = Services.from_settings(load_settings(home=services.settings.home))
    try:
        _read_all(fresh, tmp_path / "after-retire")
        assert fresh.keys.derive("mlplane/pii-hmac/default") == pseudonym_secret
        listed = {k.version: k for k in fresh.master_keys.versions(ME)}
        assert listed[1].retired_at is not None and listed[1].total == 0
        assert listed[2].current and listed[2].total == total
    finally:
        fresh.close()
    assert services.master_keys.rotate(ME).version == 3  # a retired number is not reused


def test_interrupted_rotation_stays_readable_and_resumes(
    services: Services, tmp_path: Path
) -> None:
    _store(services, tmp_path)
    total = _by_version(services)[1]

    def crash(kind: str, n: int) -> None:
        if kind == "chunks" and n >= 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        services.master_keys.rotate(ME, batch=5, on_batch=crash)
    split = _by_version(services)
    assert split == {1: total - 10, 2: 10}  # committed batches only
    _read_all(services, tmp_path / "mid")
    with pytest.raises(Conflict, match=f"{total - 10 - 2} chunks"):
        services.master_keys.retire(ME, 1)

    done = services.master_keys.rotate(ME, resume=True)
    assert not done.created and done.version == 2
    assert done.rewrapped["chunks"] == total - 10 - 2
    assert _by_version(services) == {2: total}
    services.master_keys.retire(ME, 1)
    _read_all(services, tmp_path / "resumed")


def test_old_single_key_file_is_version_one(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, json.dumps({"current": 1, "keys": {"1": "A" * 43 + "="}}).encode())
    os.close(fd)
    provider = LocalKeyFile(path)
    ring = KeyRing(provider)
    version, wrapped = ring.wrap(b"k" * 32)
    assert version == 1 and provider.versions() == [(1, None, None)]
    assert provider.add_version() == 2
    assert ring.rewrap(1, wrapped)[0] == 2
    assert ring.unwrap(1, wrapped) == b"k" * 32  # old versions stay until retired
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_rotation_in_another_process_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    server, cli = LocalKeyFile(path), LocalKeyFile(path)
    version, wrapped = KeyRing(cli).wrap(b"s" * 32)
    cli.add_version()
    new_version, new_wrapped = KeyRing(cli).rewrap(version, wrapped)
    assert KeyRing(server).unwrap(new_version, new_wrapped) == b"s" * 32
    assert server.current()[0] == 2


def test_only_platform_admins_and_no_env_key(services: Services, tmp_path: Path) -> None:
    viewer = Principal(name="v", roles={"*": "admin"}, source="test")
    for call in (
        lambda: services.master_keys.rotate(viewer),
        lambda: services.master_keys.retire(viewer, 1),
        lambda: services.master_keys.versions(viewer),
    ):
        with pytest.raises(PermissionDenied, match="platform admin"):
            call()
    env = Services.from_settings(load_settings(home=tmp_path / "env", master_key="A" * 43 + "="))
    try:
        with pytest.raises(InvalidInput, match="MLPLANE_MASTER_KEY"):
            env.master_keys.rotate(ME)
        assert [k.version for k in env.master_keys.versions(ME)] == [1]
    finally:
        env.close()


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLANE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLPLANE_MASTER_KEY", raising=False)
    runner = CliRunner()
    rotated = runner.invoke(app, ["keys", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert "version 2" in rotated.output
    listed = runner.invoke(app, ["keys", "ls", "--json"])
    assert [k["version"] for k in json.loads(listed.output)] == [1, 2]
    assert runner.invoke(app, ["keys", "retire", "1"]).exit_code == 0
    table = runner.invoke(app, ["keys", "ls"])
    assert "retired" in table.output
    remote = runner.invoke(app, ["--uri", "http://localhost:1", "keys", "ls"])
    assert remote.exit_code == 1 and "http(s) --uri" in remote.output


def test_rotation_with_keys_in_the_environment(tmp_path: Path) -> None:
    """MLPLANE_MASTER_KEY holds one version; the operator sets the new key (vN:…) and moves
    the old one to MLPLANE_MASTER_KEY_PREVIOUS, then ``rotate`` re-wraps everything and
    ``retire`` says what may leave the environment."""
    import base64

    old = base64.b64encode(os.urandom(32)).decode()
    new = base64.b64encode(os.urandom(32)).decode()
    home = tmp_path / "env"
    first = Services.from_settings(load_settings(home=home, master_key=old))
    try:
        files = _store(first, tmp_path / "src")
        pii_secret = first.keys.derive("pii-hash")
        with pytest.raises(InvalidInput, match="MLPLANE_MASTER_KEY_PREVIOUS=v1"):
            first.master_keys.rotate(ME)
    finally:
        first.close()
    bad = Services.from_settings(
        load_settings(home=home, master_key=f"v2:{new}", master_key_previous=f"v2:{old}")
    )
    try:
        with pytest.raises(InvalidInput, match="not older"):
            bad.keys  # noqa: B018
    finally:
        bad.close()
    both = load_settings(home=home, master_key=f"v2:{new}", master_key_previous=f"v1:{old}")
    svc = Services.from_settings(both)
    try:
        assert _by_version(svc) and set(_by_version(svc)) == {1}
        rotation = svc.master_keys.rotate(ME)
        assert rotation.version == 2 and sum(rotation.rewrapped.values()) > 0
        assert set(_by_version(svc)) == {2}
        assert [k.version for k in svc.master_keys.versions(ME)] == [1, 2]
        todo = svc.master_keys.retire(ME, 1)
        assert todo is not None and "remove v1" in todo and "derive:" in todo
        derive = "derive:" + todo.split("derive:")[1].split(" ")[0]
        assert svc.keys.derive("pii-hash") == pii_secret
    finally:
        svc.close()
    # Version 1 gone from the environment: everything still reads, derived secrets too.
    alone = Services.from_settings(
        load_settings(home=home, master_key=f"v2:{new}", master_key_previous=derive)
    )
    try:
        _read_all(alone, tmp_path / "out")
        assert (tmp_path / "out" / "ds@1" / "big.bin").read_bytes() == files["big.bin"]
        assert alone.keys.derive("pii-hash") == pii_secret
    finally:
        alone.close()
