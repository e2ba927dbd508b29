"""A real embedded store with three versions of one model, and the inference app on a real
uvicorn server on a loopback port (TCP_NODELAY, like the other test servers)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from mlplane.config import load_settings
from mlplane.security import local_admin
from mlplane.services import Services
from mlplane.serving.inference.app import create_inference_app

ME = local_admin("tester")
COLUMNS = [f"f{i}" for i in range(20)]


@dataclass
class Store:
    svc: Services
    x: pd.DataFrame
    models: dict[int, Any]
    """Version -> the fitted model registered as it (3: raises on rows of class 1)."""


@dataclass
class Running:
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    app: Any

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def make_store(home: Path) -> Store:
    svc = Services.from_settings(load_settings(home=home))
    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(1000, 20)), columns=COLUMNS)
    y = ((x["f0"] + 0.5 * x["f1"] * x["f2"] - 0.3 * x["f3"] ** 2) > 0).astype(int)
    gbc = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=7).fit(x, y)
    lr = LogisticRegression().fit(x, y)
    # A broken fitted state: the classes lost their second label, so rows of class 1 raise
    # inside scikit-learn while the example rows (class 0) predict: a real failing version.
    broken = LogisticRegression().fit(x, y)
    zeros = x[broken.predict(x) == 0]
    broken.classes_ = broken.classes_[:1]
    svc.registry.register(ME, "m", gbc, input_example=x[:5])
    svc.registry.register(ME, "m", lr, input_example=x[:5])
    svc.registry.register(ME, "m", broken, input_example=zeros[:5])
    return Store(svc, x, {1: gbc, 2: lr, 3: broken})


def serve(svc: Services, auth: str = "none", **kw: Any) -> Running:
    app = create_inference_app(
        svc, worker_id=f"w-{uuid.uuid4().hex[:6]}", auth=auth, poll_s=0.2, flush_s=0.3, **kw
    )
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", loop="uvloop", http="httptools"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return Running(url, server, thread, app)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the inference app did not become ready")


def wait_for(check: Any, timeout: float = 10.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = make_store(tmp_path_factory.mktemp("inference-store"))
    s.svc.deployments.create(ME, "main", "m@1", config={"batching": "on", "max_wait_ms": 2})
    yield s
    s.svc.close()


class Sink:
    """Where the session's server hands sampled payloads (the capture writer's interface)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, Any]] = []

    def submit(self, deployment_id: int, record: Any) -> None:
        self.records.append((deployment_id, record))


@pytest.fixture(scope="session")
def sink() -> Sink:
    return Sink()


@pytest.fixture(scope="session")
def running(store: Store, sink: Sink) -> Iterator[Running]:
    r = serve(store.svc, capture=sink)
    yield r
    r.stop()


@pytest.fixture
def http(running: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.url, timeout=30) as c:
        yield c


def deploy(
    store: Store, running: Running, ref: str = "m@1", *, served: bool = True, **config: Any
) -> str:
    """A fresh deployment for one test, once the worker has loaded it (and, with
    ``served=False``, once it has also unloaded it again: a deployment that scales to zero
    may do so before a poll sees it loaded)."""
    name = f"d-{uuid.uuid4().hex[:8]}"
    d = store.svc.deployments.create(ME, name, ref, config=config or None)
    host = running.app.state.host

    def ready() -> bool:
        hosted = host.hosted.get(d.deployment_id)
        if hosted is None or d.deployment_id not in host.generations:
            return False  # the first load has not finished
        return (hosted.served is not None) == served

    assert wait_for(ready, 20), f"{name} was not {'loaded' if served else 'unloaded'}"
    return name


def split(x: pd.DataFrame) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(x.columns), "data": x.to_numpy().tolist()}}
