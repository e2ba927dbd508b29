"""Background metric batching against a server that goes away and comes back."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from mlplane.client import Client
from mlplane.client.buffer import MetricBuffer
from mlplane.config import load_settings
from mlplane.errors import Unavailable
from mlplane.tracking.entities import Metric
from tests.conftest import ServerProcess


@pytest.mark.slow
def test_points_survive_a_short_server_outage(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    port = srv.port
    c = Client(settings=load_settings(uri=srv.url, retry_max_s=30, flush_interval_s=0.2))
    rid = c.create_run(c.create_experiment("outage")).info.run_id
    srv.stop()
    for step in range(300):
        c.log_metric(rid, "loss", 1.0, step=step, synchronous=False)
    time.sleep(0.5)  # the background thread is now retrying with backoff
    srv = ServerProcess(tmp_path, port=port)
    try:
        assert c.flush() == 0
        assert len(c.get_metric_history(rid, "loss")) == 300
    finally:
        c.close()
        srv.stop()


def test_undeliverable_points_are_counted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    def down(run_id: str, points: object) -> None:
        raise Unavailable("server unreachable")

    buf = MetricBuffer(down, flush_interval_s=60)
    for step in range(42):
        buf.add("r1", "loss", 1.0, 1, step)
    with caplog.at_level(logging.ERROR, logger="mlplane"):
        assert buf.flush() == 42
    assert "dropped 42 metric points" in caplog.text
    buf.close()


def test_size_triggered_flush_and_ordering() -> None:
    got: list[Metric] = []
    sent = threading.Event()

    def send(run_id: str, points: list[Metric]) -> None:
        got.extend(points)
        sent.set()

    buf = MetricBuffer(send, flush_interval_s=3600, flush_max_points=100)
    for step in range(100):
        buf.add("r", "m", float(step), 1, step)
    assert sent.wait(5), "reaching flush_max_points must wake the sender without waiting"
    buf.close()
    assert [m.step for m in got] == list(range(100))


def test_concurrent_producers_lose_nothing() -> None:
    got: list[Metric] = []
    lock = threading.Lock()

    def send(run_id: str, points: list[Metric]) -> None:
        with lock:
            got.extend(points)

    buf = MetricBuffer(send, flush_interval_s=0.01, flush_max_points=500)

    def produce(k: int) -> None:
        for step in range(5000):
            buf.add("r", f"k{k}", 1.0, 1, step)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    buf.close()
    assert len(got) == 20_000
    for k in range(4):
        assert [m.step for m in got if m.key == f"k{k}"] == list(range(5000))
