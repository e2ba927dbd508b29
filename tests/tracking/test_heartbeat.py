"""A logging process killed mid-run: its run is marked FAILED and every flushed point is kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mlplane.client import Client
from mlplane.config import load_settings
from tests.conftest import ServerProcess

CHILD = textwrap.dedent(
    """
    import sys, time, mlplane
    run = mlplane.start_run("doomed", capture_context=False)
    print(run.run_id, flush=True)
    step = 0
    while True:
        for _ in range(50):
            mlplane.log_metric("loss", 1.0 / (step + 1), step=step)
            step += 1
        mlplane.flush()
        print("flushed", step, flush=True)
        time.sleep(0.05)
    """
)


def _run_child(env: dict[str, str], tmp: Path) -> tuple[str, int]:
    script = tmp / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script)], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    flushed = 0
    while flushed < 500:
        line = proc.stdout.readline()
        assert line, "child exited early"
        flushed = int(line.split()[1])
    proc.send_signal(signal.SIGKILL)  # no handler runs: the process just dies
    proc.wait(10)
    return run_id, flushed


def _wait_failed(client: Client, run_id: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = client.get_run(run_id).info.status
        if status == "FAILED":
            return status
        time.sleep(0.25)
    return status


@pytest.mark.slow
def test_killed_embedded_run_is_marked_failed(tmp_path: Path) -> None:
    env = {
        "MLPLANE_HOME": str(tmp_path),
        "MLPLANE_HEARTBEAT_INTERVAL_S": "0.2",
        "MLPLANE_FLUSH_INTERVAL_S": "0.1",
    }
    run_id, flushed = _run_child(env, tmp_path)
    client = Client(settings=load_settings(home=tmp_path, heartbeat_timeout_s=1.0))
    assert client.get_run(run_id).info.status in ("RUNNING", "FAILED")
    assert _wait_failed(client, run_id) == "FAILED"
    run = client.get_run(run_id)
    assert run.data.tags["mlplane.failure"] == "heartbeat lost"
    assert run.info.end_time is not None
    steps = [m.step for m in client.get_metric_history(run_id, "loss")]
    assert steps[:flushed] == list(range(flushed))  # every flushed point, in order


@pytest.mark.slow
def test_killed_remote_run_is_marked_failed_by_the_server(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, env={"MLPLANE_HEARTBEAT_TIMEOUT_S": "1.5"})
    try:
        env = {
            "MLPLANE_URI": srv.url,
            "MLPLANE_HEARTBEAT_INTERVAL_S": "0.2",
            "MLPLANE_FLUSH_INTERVAL_S": "0.1",
        }
        run_id, flushed = _run_child(env, tmp_path)
        client = Client(srv.url)
        assert _wait_failed(client, run_id) == "FAILED"
        steps = [m.step for m in client.get_metric_history(run_id, "loss")]
        assert steps[:flushed] == list(range(flushed))
        client.close()
    finally:
        srv.stop()


def test_sigterm_flushes_queued_points_and_kills_the_run(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(
            """
        import time, mlplane
        run = mlplane.start_run("stopped", capture_context=False)
        for step in range(3000):
            mlplane.log_metric("loss", 1.0, step=step)
        print(run.run_id, flush=True)
        time.sleep(60)
        """
        )
    )
    env = {**os.environ, "MLPLANE_HOME": str(tmp_path), "MLPLANE_FLUSH_INTERVAL_S": "30"}
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == -signal.SIGTERM  # still dies of SIGTERM, as the caller expects
    client = Client(settings=load_settings(home=tmp_path))
    assert client.get_run(run_id).info.status == "KILLED"
    assert len(client.get_metric_history(run_id, "loss")) == 3000


def test_normal_exit_flushes_and_finishes(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        "import mlplane\nr = mlplane.start_run(capture_context=False)\n"
        "[mlplane.log_metric('m', i, step=i) for i in range(1234)]\nprint(r.run_id)\n"
    )
    env = {**os.environ, "MLPLANE_HOME": str(tmp_path), "MLPLANE_FLUSH_INTERVAL_S": "30"}
    out = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, check=True
    )
    run_id = out.stdout.strip()
    client = Client(settings=load_settings(home=tmp_path))
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "loss" if False else "m")) == 1234


def test_reaper_leaves_runs_without_heartbeats_alone(tmp_path: Path) -> None:
    client = Client(settings=load_settings(home=tmp_path))
    eid = client.create_experiment("x")
    beating = client.create_run(eid, heartbeat=True).info.run_id
    silent = client.create_run(eid).info.run_id
    time.sleep(0.05)
    svc = client.transport.services  # type: ignore[attr-defined]
    assert svc.tracking.reap_stale_runs(0.01) == 1
    assert client.get_run(beating).info.status == "FAILED"
    assert client.get_run(silent).info.status == "RUNNING"
