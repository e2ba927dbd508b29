"""``mlplane db …`` and ``mlplane server``: the schema commands and a real server process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlplane.cli.server import LOOPBACK_ONLY, is_loopback
from mlplane.config import load_settings
from mlplane.db import Database
from mlplane.db.migrate import HEAD_REVISION, upgrade
from tests.cli.helpers import Invoke


def test_db_upgrade_and_current(cli: Invoke, home: Path) -> None:
    before = json.loads(cli("db", "current", "--json").stdout)
    assert before["current"] is None
    assert before["head"] == HEAD_REVISION
    assert before["up_to_date"] is False
    assert str(home / "mlplane.db") in before["database"]
    assert "mlplane db upgrade" in cli("db", "current").stdout

    first = cli("db", "upgrade")
    assert first.exit_code == 0, first.output
    assert f"from (empty) to {HEAD_REVISION}" in first.stdout
    now = json.loads(cli("db", "current", "--json").stdout)
    assert now["current"] == HEAD_REVISION and now["up_to_date"] is True
    assert HEAD_REVISION in cli("db", "current").stdout

    again = json.loads(cli("db", "upgrade", "--json").stdout)
    assert again["from"] == again["to"] == HEAD_REVISION
    assert "already at revision" in cli("db", "upgrade").stdout


def test_server_refuses_an_outdated_schema_up_front(cli: Invoke, home: Path) -> None:
    db = Database(load_settings().resolved_db_url)
    try:
        upgrade(db, "0001_initial")
    finally:
        db.dispose()
    refused = cli("server", "--port", str(_free_port()))
    assert refused.exit_code == 1
    assert "run `mlplane db upgrade`" in refused.stderr
    assert "Traceback" not in refused.output

    upgraded = cli("db", "upgrade", "--json")
    assert json.loads(upgraded.stdout)["from"] == "0001_initial"
    assert json.loads(cli("db", "current", "--json").stdout)["up_to_date"] is True


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_server_refuses_a_non_loopback_host(cli: Invoke, host: str) -> None:
    result = cli("server", "--host", host, "--auth", "none")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {LOOPBACK_ONLY}"


def test_server_accepts_only_known_auth_modes(cli: Invoke) -> None:
    result = cli("server", "--auth", "basic")
    assert result.exit_code == 2
    assert "--auth" in result.output


def test_loopback_addresses() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "::", "example.com", ""))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_real_server_answers_the_cli_over_http(
    cli: Invoke, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLPLANE_HOME": str(home)}
    env.pop("MLPLANE_URI", None)
    env.pop("MLPLANE_AUTH", None)  # the default: token authentication
    made = cli("admin", "bootstrap", "--json")
    assert made.exit_code == 0, made.output
    log = home.parent / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlplane.cli.main",
                "server",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"server did not start: {log.read_text()}"
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        refused = cli("--uri", url, "experiments", "ls")
        assert refused.exit_code == 1 and "authentication required" in refused.stderr
        monkeypatch.setenv("MLPLANE_TOKEN", json.loads(made.stdout)["token"])
        created = cli("--uri", url, "experiments", "create", "remote", "--json")
        assert created.exit_code == 0, created.output
        listed = cli("--uri", url, "experiments", "ls", "--json")
        assert listed.exit_code == 0, listed.output
        assert [e["name"] for e in json.loads(listed.stdout)] == ["remote"]
        missing = cli("--uri", url, "runs", "show", "0" * 32)
        assert missing.exit_code == 1
        assert f"run {'0' * 32} does not exist" in missing.stderr
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
