"""Shared fixtures: real stores (SQLite, PostgreSQL) and a real server on a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlplane import fluent
from mlplane.client import Client
from mlplane.config import Settings, load_settings

PG_ADMIN_URL = os.environ.get("MLPLANE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


def create_pg_database() -> str:
    """A fresh, empty PostgreSQL database; returns its URL."""
    import psycopg

    name = f"mlplane_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test ever touches ~/.mlplane, and the fluent API starts fresh each test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MLPLANE_HOME", str(home))
    for var in (
        "MLPLANE_URI",
        "MLPLANE_DB_URL",
        "MLPLANE_ARTIFACTS_URL",
        "MLPLANE_CONFIG",
        "MLPLANE_TOKEN",
        "MLPLANE_AUTH",
    ):
        monkeypatch.delenv(var, raising=False)
    fluent.set_tracking_uri(None)
    yield
    fluent._end_all(fluent.RunStatus.FINISHED)
    fluent.set_tracking_uri(None)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    if not postgres_available():
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
    url = create_pg_database()
    yield url
    drop_pg_database(url)


class ServerProcess:
    def __init__(
        self,
        home: Path,
        env: dict[str, str] | None = None,
        workers: int = 1,
        port: int | None = None,
    ) -> None:
        # The test binds the socket and hands it to uvicorn (--fd): no window in which a
        # server of another xdist worker can take the same free port.
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this: uvicorn does not set it on a socket it is
        # handed (--fd), and without it every response waits ~40 ms for a delayed ACK.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(128)
        self.sock.set_inheritable(True)
        self.port = int(self.sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        # Test servers bind loopback and run without authentication unless ``env`` asks
        # for it (MLPLANE_AUTH=token): tests/security covers authentication end to end.
        # ... and without rate limits (one bucket would serve every test of a worker):
        # tests/security covers both.
        full_env = {
            **os.environ,
            "MLPLANE_HOME": str(home),
            "MLPLANE_AUTH": "none",
            "MLPLANE_RATE_LIMIT_PER_S": "0",
            **(env or {}),
        }
        full_env.pop("MLPLANE_URI", None)
        self.log = open(home / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "mlplane.server.app:app_factory",
                "--factory",
                "--fd",
                str(self.sock.fileno()),
                "--workers",
                str(workers),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--log-level",
                "warning",
            ],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            pass_fds=(self.sock.fileno(),),
        )
        self.sock.close()  # the server holds it now; when it stops, connections are refused
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(home / 'server.log').read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start in 30 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``mlplane`` server on SQLite, on a loopback port, for the whole session."""
    srv = ServerProcess(tmp_path_factory.mktemp("server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def sqlite_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(home=tmp_path_factory.mktemp("embedded"))


@pytest.fixture(params=["sqlite", "postgres", "http"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    """The same SDK client over each transport and store: the conformance suite runs on all."""
    if request.param == "sqlite":
        c = Client(settings=request.getfixturevalue("sqlite_settings"))
    elif request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        c = Client(settings=load_settings(home=tmp_path_factory.mktemp("pg"), db_url=url))
    else:
        srv = request.getfixturevalue("server")
        c = Client(settings=load_settings(uri=srv.url, retry_max_s=2))
    yield c
    c.close()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]
