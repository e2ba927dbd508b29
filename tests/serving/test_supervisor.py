"""``mlplane serve``: the autoscaler's arithmetic, the pool's crash loop, and the real server
as a subprocess: both workers answer, a killed worker comes back, canaries are promoted
and rolled back by the control loop, the pool grows under load, SIGTERM exits 0."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

from mlplane.config import load_settings
from mlplane.errors import InvalidInput, MlplaneError
from mlplane.security import Principal
from mlplane.services import Services
from mlplane.serving import _workers
from mlplane.serving._autoscale import Autoscaler, LoadReader, busy_seconds
from mlplane.serving.supervisor import LOOPBACK_ONLY, check_tls, prepare

ADMIN = Principal("tester", is_platform_admin=True, source="test")
COLUMNS = ["a", "b", "c", "d"]
WORKER = "x-mlplane-worker"


# -- the arithmetic ------------------------------------------------------------------------------


def test_autoscaler_grows_at_once_and_shrinks_after_the_cool_down() -> None:
    s = Autoscaler(minimum=1, maximum=4, cooldown_s=30)
    assert s.want(0, 8) == 1 and s.want(8, 8) == 1 and s.want(8.5, 8) == 2
    assert s.want(100, 8) == 4  # clamped to the maximum
    assert s.decide(20, 8, current=1, now=0) == 3  # up at once
    assert s.decide(3, 8, current=3, now=1) == 3  # below target: the cool-down starts
    assert s.decide(3, 8, current=3, now=20) == 3
    assert s.decide(30, 8, current=3, now=25) == 4  # load is back: the clock resets
    assert s.decide(3, 8, current=4, now=26) == 4
    assert s.decide(3, 8, current=4, now=55) == 4
    assert s.decide(3, 8, current=4, now=56.5) == 1  # 30 s below: down to what it needs
    assert Autoscaler(minimum=0, maximum=2).want(0, 8) == 1  # never below one worker


def test_load_reader_takes_the_mean_in_flight_over_the_interval() -> None:
    cells = [0.0, 0.0, 0.0, 0.0]  # count, busy seconds, since (monotonic), ready
    reader = LoadReader()

    def add(delta: float, now: float) -> None:  # what the Meter does in a worker
        cells[1] += cells[0] * (now - cells[2])
        cells[2], cells[0] = now, cells[0] + delta

    add(+1, 100.0)
    assert reader.sample([cells], 100.0) == 1  # first sight: the count now
    add(+1, 100.5)  # two in flight from 100.5
    add(-1, 100.9)
    add(-1, 101.0)
    # over [100, 101]: 1 request for 1 s + another for 0.4 s
    assert reader.sample([cells], 101.0) == pytest.approx(1.4)
    assert busy_seconds(cells, 102.0) == pytest.approx(1.4)
    assert reader.sample([cells], 102.0) == 0


def test_prepare_refuses_what_cannot_work(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    with pytest.raises(InvalidInput, match=re.escape(LOOPBACK_ONLY)):
        prepare(host="0.0.0.0", auth="none", settings=settings)
    with pytest.raises(InvalidInput, match="--min-workers must be between 1 and --workers"):
        prepare(workers=2, min_workers=3, settings=settings)
    with pytest.raises(InvalidInput, match="--tls-cert needs --tls-key"):
        check_tls(tmp_path / "cert.pem", None)
    with pytest.raises(InvalidInput, match="cannot read the TLS certificate"):
        check_tls(tmp_path / "cert.pem", tmp_path / "key.pem")
    with pytest.raises(InvalidInput, match="no deployment named 'ghost'; none yet"):
        prepare(port=0, deployments=["ghost"], settings=settings)


@pytest.mark.slow
def test_a_worker_that_keeps_crashing_stops_the_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_workers, "BACKOFF_S", (0.01,) * 5)
    monkeypatch.setattr(_workers, "GIVE_UP_AFTER", 3)
    # A store that cannot be opened (its folder is a file): every worker fails to start.
    (tmp_path / "file").write_text("")
    broken = load_settings(home=tmp_path, db_url=f"sqlite:///{tmp_path}/file/x.db")

    def spec(slot: int, worker_id: str) -> _workers.WorkerSpec:
        return _workers.WorkerSpec(
            family=socket.AF_INET,
            address=("127.0.0.1", 0),
            settings=broken,
            auth="none",
            only=None,
            poll_s=0.5,
            log_level="critical",
            tls=None,
            worker_id=worker_id,
            slot=slot,
        )

    pool = _workers.WorkerPool(get_context("spawn"), spec)
    pool.scale_to(1)
    deadline = time.monotonic() + 60
    with pytest.raises(MlplaneError, match=r"worker 0 exited 3 times .* exited with status 1"):
        while time.monotonic() < deadline:
            pool.poll()
            time.sleep(0.02)
    pool.stop_all()


# -- the real server -----------------------------------------------------------------------------


def _data(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, len(COLUMNS))), columns=COLUMNS)
    return x, (x["a"] + x["b"] > 0).astype(int).to_numpy()


def make_home(home: Path, deployments: dict[str, dict[str, Any]]) -> Path:
    """A store with model ``m`` (versions 1 and 2, both good) and ``deployments`` (name ->
    config) of ``m@1``; names starting with ``f`` deploy ``f@1`` of model ``f`` (1 good, 2
    whose predictions of :func:`rows` raise inside scikit-learn)."""
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    services = Services.from_settings(load_settings(home=home))
    try:
        reg = services.registry
        reg.register(ADMIN, "m", LogisticRegression().fit(x, y), input_example=x[:5])
        reg.register(ADMIN, "m", LogisticRegression(C=0.5).fit(x, y), input_example=x[:5])
        if any(name.startswith("f") for name in deployments):
            reg.register(ADMIN, "f", LogisticRegression().fit(x, y), input_example=x[:5])
            # A broken fitted state: the classes lost their second label. The input example
            # (rows of the first class) predicts, so registration and warm-up pass; rows of
            # the second class fail inside scikit-learn (IndexError): a 5xx, not bad input.
            broken = LogisticRegression().fit(x, y)
            first = x[broken.predict(x) == 0]
            broken.classes_ = broken.classes_[:1]
            reg.register(ADMIN, "f", broken, input_example=first[:5])
        for name, config in deployments.items():
            ref = "f@1" if name.startswith("f") else "m@1"
            services.deployments.create(ADMIN, name, ref, config=config)
    finally:
        services.close()
    return home


class Serve:
    """``mlplane serve`` as a subprocess on a port it picks (``--port 0``)."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.log_path = home / f"serve-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, "MLPLANE_HOME": str(home), "COLUMNS": "200", **(env or {})}
        for var in ("MLPLANE_URI", "MLPLANE_DB_URL", "MLPLANE_AUTH", "MLPLANE_TOKEN"):
            if var not in (env or {}):
                full_env.pop(var, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlplane.cli.main", "serve", "--port", "0", *args],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            assert self.proc.poll() is None, f"mlplane serve exited:\n{self.log()}"
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not in the log after {timeout} s:\n{self.log()}")

    def start(self, timeout: float = 90, **client: Any) -> Serve:
        self.url = self.wait_for(r"listening on (https?://\S+) with", timeout).group(1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"mlplane serve exited:\n{self.log()}"
            try:
                if httpx.get(self.url + "/v2/health/ready", timeout=2, **client).is_success:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready after {timeout} s:\n{self.log()}")

    def workers(self) -> list[psutil.Process]:
        """The worker processes (not multiprocessing's resource tracker)."""
        children = psutil.Process(self.proc.pid).children()
        return [c for c in children if "spawn_main" in " ".join(c.cmdline())]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()


def rows(n: int = 2) -> dict[str, Any]:
    """``n`` rows of the second class (``a + b > 0``)."""
    data = [[1.0 + i / 100, 1.0, 0.0, float(i % 3)] for i in range(n)]
    return {"dataframe_split": {"columns": COLUMNS, "data": data}}


def predict(c: httpx.Client, base: str, name: str, n: int = 2) -> httpx.Response:
    return c.post(f"{base}/api/v1/deployments/{name}/predict", json=rows(n))


def answered_by(base: str, name: str, tries: int = 40, **client: Any) -> set[str]:
    """Worker ids of ``tries`` predictions, each on a new connection (the kernel picks the
    worker per connection)."""
    seen = set()
    for _ in range(tries):
        with httpx.Client(timeout=30, **client) as c:  # a fresh worker on a loaded machine
            r = predict(c, base, name)
            assert r.status_code == 200, r.text
            seen.add(r.headers[WORKER])
    return seen


class Load:
    """Requests in the background until stopped; counts statuses."""

    def __init__(self, fn: Callable[[httpx.Client], httpx.Response], threads: int = 2) -> None:
        self.fn = fn
        self.statuses: dict[int, int] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._lock = threading.Lock()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as c:
            while not self._stop.is_set():
                try:
                    status = self.fn(c).status_code
                except httpx.HTTPError:
                    status = -1
                with self._lock:
                    self.statuses[status] = self.statuses.get(status, 0) + 1

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def wait_rollout(services: Services, name: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        rollout = services.deployments.get(ADMIN, name).rollout
        if rollout is not None and rollout.status != "running":
            return rollout
        assert time.monotonic() < deadline, f"rollout still running: {rollout}"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_home(
        tmp_path_factory.mktemp("serve"), {"d": {}, "fails": {}, "busy": {"target_inflight": 1}}
    )


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[Serve]:
    srv = Serve(home, "--workers", "2", "--auth", "none", "-d", "d", "-d", "fails").start()
    yield srv
    srv.stop()


@pytest.fixture
def services(home: Path) -> Iterator[Services]:
    s = Services.from_settings(load_settings(home=home))
    yield s
    s.close()


@pytest.mark.slow
def test_both_workers_answer(server: Serve) -> None:
    assert "hosting d (m@1, project default)" in server.log()
    server.wait_for(r"worker 1 \(pid \d+\) is serving")
    assert len(answered_by(server.url, "d")) == 2, server.log()
    assert len(server.workers()) == 2


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_server_keeps_answering(server: Serve) -> None:
    victim = server.workers()[0]
    victim.kill()
    victim.wait(10)  # its socket is closed: new connections go to the other worker
    deadline = time.monotonic() + 60
    while not re.search(rf"pid {victim.pid}\) was killed by SIGKILL", server.log()):
        with httpx.Client(timeout=10) as c:  # a new connection each time
            assert predict(c, server.url, "d").status_code == 200  # the other one answers
        assert time.monotonic() < deadline, server.log()
    server.wait_for(r"restarting it in 0\.5 s")
    deadline = time.monotonic() + 60
    while len(pids := {p.pid for p in server.workers()}) != 2 or victim.pid in pids:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.2)
    for pid in pids:
        server.wait_for(rf"\(pid {pid}\) is serving")
    assert len(answered_by(server.url, "d")) == 2


@pytest.mark.slow
def test_the_control_loop_promotes_a_healthy_canary(server: Serve, services: Services) -> None:
    services.deployments.start_canary(
        ADMIN,
        "d",
        "m@2",
        steps=[50, 100],
        interval="1s",
        thresholds={"min_requests": 5, "max_error_rate": 0.5},
    )
    with Load(lambda c: predict(c, server.url, "d")) as load:
        rollout = wait_rollout(services, "d", 45)
    assert rollout.status == "promoted", rollout
    assert set(load.statuses) == {200}, load.statuses
    d = services.deployments.get(ADMIN, "d")
    assert [v.version for v in d.routing.variants] == [2]
    assert [e.actor for e in services.deployments.history(ADMIN, "d")][-1] == "mlplane-serve"


@pytest.mark.slow
def test_the_control_loop_rolls_back_a_failing_canary(server: Serve, services: Services) -> None:
    services.deployments.start_canary(
        ADMIN,
        "fails",
        "f@2",
        steps=[50, 100],
        interval="1s",
        thresholds={"min_requests": 5, "max_error_rate": 0.5},
    )
    with Load(lambda c: predict(c, server.url, "fails")) as load:
        rollout = wait_rollout(services, "fails", 45)
    assert rollout.status == "rolled_back", rollout
    assert rollout.failures == rollout.failure_limit == 2
    assert load.statuses.get(500, 0) >= 5, load.statuses  # a real server error, not a 4xx
    assert not [s for s in load.statuses if 400 <= s < 500], load.statuses
    assert [v.version for v in services.deployments.get(ADMIN, "fails").routing.variants] == [1]
    # Every worker picks the rollback up within its poll interval: only stable answers then.
    deadline, ok = time.monotonic() + 15, 0
    while ok < 10:
        assert time.monotonic() < deadline, server.log()
        with httpx.Client(timeout=10) as c:
            ok = ok + 1 if predict(c, server.url, "fails").status_code == 200 else 0


@pytest.mark.slow
def test_sigterm_stops_every_worker_and_exits_0(server: Serve) -> None:
    workers = server.workers()
    assert server.stop(signal.SIGTERM) == 0, server.log()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
    assert "stopped" in server.log().splitlines()[-1]


@pytest.mark.slow
def test_the_pool_grows_under_load(home: Path) -> None:
    args = ("--min-workers", "1", "--workers", "2", "--deployment", "busy")
    srv = Serve(home, *args, "--auth", "none").start()
    try:
        assert "with 1 to 2 workers (autoscaled)" in srv.log()
        assert "hosting busy (m@1, project default)" in srv.log()
        assert "hosting every deployment" not in srv.log()
        assert len(srv.workers()) == 1
        with Load(lambda c: predict(c, srv.url, "busy", n=50), threads=6):
            srv.wait_for(r"scaling up to 2 workers: [\d.]+ requests in flight, target 1", 30)
            srv.wait_for(r"worker 1 \(pid \d+\) is serving", 60)
        assert len(srv.workers()) == 2
    finally:
        assert srv.stop() == 0, srv.log()
