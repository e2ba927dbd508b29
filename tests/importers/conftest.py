"""A real MLflow: a cached virtualenv with the full ``mlflow``, a server on a loopback port
and a file store, both filled by ``mlflow_driver.py`` with the stock MLflow client."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("mlflow_driver.py")


def _bench_common() -> Any:
    spec = importlib.util.spec_from_file_location(
        "_bench_common", ROOT / "benchmarks" / "_common.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def mlflow_python() -> Path:
    """The MLflow venv's python; built once under .bench/mlflow-venv (a minute or two)."""
    return Path(_bench_common().ensure_mlflow_venv(ROOT / ".bench" / "mlflow-venv"))


@dataclass(frozen=True)
class MlflowWorld:
    url: str
    """The running server (SQLite backend, proxied artifacts)."""
    db_url: str
    artifacts: Path
    """The server's --artifacts-destination."""
    expected: dict[str, Any]
    """What the driver logged to the server."""
    mlruns: Path
    expected_fs: dict[str, Any]
    """What the driver logged to the file store."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLPLANE_"))}
    return {**env, "PYTHONWARNINGS": "ignore", "MLFLOW_ALLOW_FILE_STORE": "true"}


@pytest.fixture(scope="session")
def mlflow_world(
    mlflow_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MlflowWorld]:
    base = tmp_path_factory.mktemp("mlflow")
    (base / "fs").mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = base / "mlflow.db"
    argv = [str(mlflow_python.parent / "mlflow"), "server", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{db}",
            "--artifacts-destination", str(base / "artifacts")]  # fmt: skip
    log = (base / "server.log").open("wb")
    server = subprocess.Popen(
        argv, cwd=base, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    # The driver fills the file store while the server starts, then the server.
    driver = subprocess.Popen(
        [str(mlflow_python), str(DRIVER), "file:./mlruns", url],
        cwd=base / "fs",
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = driver.communicate(timeout=300)
        if driver.returncode != 0:
            raise RuntimeError(
                f"the MLflow driver failed:\n{err[-3000:]}\nserver log:\n"
                + (base / "server.log").read_text()[-2000:]
            )
        logged = json.loads(out.strip().splitlines()[-1])
        yield MlflowWorld(
            url=url,
            db_url=f"sqlite:///{db}",
            artifacts=base / "artifacts",
            expected=logged["server"],
            mlruns=base / "fs" / "mlruns",
            expected_fs=logged["fs"],
        )
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # the server's own group: it and its workers
        try:
            server.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
