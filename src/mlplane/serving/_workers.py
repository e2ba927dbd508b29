"""The worker processes of ``mlplane serve``: what each one runs, and the pool that starts,
restarts and stops them.

Every worker binds its own socket to the same address with ``SO_REUSEPORT`` and the kernel
spreads new connections over the sockets. With one listening socket shared by all workers
(uvicorn's ``--workers``), whichever worker woke first accepted nearly every connection of
a burst and left the other cores idle. The socket is bound but not listening until the
event loop starts serving it, after the app's startup: the kernel sends a connection only
to sockets that listen, so a worker still loading its models gets none.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from typing import Any

from mlplane.config import Settings
from mlplane.errors import InvalidInput, MlplaneError

log = logging.getLogger("mlplane.serving.supervisor")

WORKER_HEADER = b"x-mlplane-worker"
"""The response header naming the worker that answered."""
GRACEFUL_S = 30.0
"""How long a stopping worker may take to finish the requests it holds."""
FAST_CRASH_S = 10.0
"""A worker that exits sooner than this after starting counts as a crash loop step."""
GIVE_UP_AFTER = 5
"""Consecutive fast crashes of one worker slot that stop ``mlplane serve``."""
BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
"""The wait before restarting a worker, by its number of consecutive fast crashes."""
READY = 3
"""Index of a worker's ready flag in its shared cells (after the meter's three)."""


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs; pickled into it (``spawn``)."""

    family: int
    address: tuple[Any, ...]
    settings: Settings
    auth: str
    only: tuple[str, ...] | None
    poll_s: float
    log_level: str
    tls: tuple[str, str] | None
    worker_id: str
    slot: int


def bind(family: int, address: tuple[Any, ...], *, listen: bool = False) -> socket.socket:
    """A TCP socket bound to ``address`` that shares it with the other workers' sockets."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Accepted connections inherit it; without it each response can wait ~40 ms for
        # a delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve(host: str, port: int) -> tuple[int, tuple[Any, ...], socket.socket]:
    """Resolve ``host``, check that nothing else listens on ``port`` and hold it (port 0:
    pick one). Returns the family, the address the workers bind and the holding socket,
    bound (``SO_REUSEPORT``) but never listening, so it takes no connections.

    The check binds once without ``SO_REUSEPORT``: otherwise a second ``mlplane serve`` on
    the same port would silently share the traffic of the first."""
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
        )
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        address = probe.getsockname()
    except OSError as exc:
        raise InvalidInput(
            f"cannot listen on {host}:{port}: {exc.strerror} (is another server on that port?)"
        ) from None
    finally:
        probe.close()
    held = bind(family, address)
    return family, tuple(address), held


# -- in the worker process ---------------------------------------------------------------------


def run_worker(spec: WorkerSpec, cells: Any) -> None:
    """The worker's main: its services, the inference app and uvicorn on its own socket."""
    log_to_stderr(spec.log_level, f"worker {spec.slot}")
    # uvicorn re-raises the signal it stopped on once it has shut down: make that exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    _exit_with_parent()
    import uvicorn

    from mlplane.services import Services
    from mlplane.serving._autoscale import Meter
    from mlplane.serving.capture import CaptureWriter
    from mlplane.serving.inference.app import create_inference_app

    sock = bind(spec.family, spec.address)
    services = Services.from_settings(spec.settings)
    capture = CaptureWriter(services, worker_id=spec.worker_id)
    try:
        app = create_inference_app(
            services,
            worker_id=spec.worker_id,
            auth=spec.auth,
            only=spec.only,
            poll_s=spec.poll_s,
            capture=capture,
        )
        config = uvicorn.Config(
            Meter(app, cells, spec.worker_id, WORKER_HEADER),
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level=spec.log_level,
            # One line per request costs more than a small model's prediction.
            access_log=spec.log_level in ("debug", "trace"),
            ssl_certfile=spec.tls[0] if spec.tls else None,
            ssl_keyfile=spec.tls[1] if spec.tls else None,
            timeout_graceful_shutdown=int(GRACEFUL_S),
        )
        server = uvicorn.Server(config)
        startup = server.startup

        async def startup_then_ready(sockets: Any = None) -> None:
            await startup(sockets=sockets)
            if server.started:  # listening: the supervisor may say so
                cells[READY] = 1.0

        server.startup = startup_then_ready  # type: ignore[method-assign]
        server.run(sockets=[sock])
    finally:
        capture.close()
        services.close()
        sock.close()


def _exit_with_parent() -> None:
    """Stop gracefully when the supervisor is gone (killed with -9): no orphan serves on."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="mlplane-parent-watch", daemon=True).start()


def log_to_stderr(level: str, who: str) -> None:
    """mlplane's own log lines (the control loop, alerts, the app) on stderr."""
    logger = logging.getLogger("mlplane")
    if any(getattr(h, "_mlplane_serve", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(levelname)-9s [{who}] %(message)s"))
    handler._mlplane_serve = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if level in ("debug", "trace") else level.upper())


# -- in the supervisor -------------------------------------------------------------------------


@dataclass
class Worker:
    slot: int
    process: SpawnProcess
    cells: Any
    worker_id: str
    started_at: float
    stop_by: float | None = None
    """Set when asked to stop: the time after which it is killed."""
    announced: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid


class WorkerPool:
    """Keeps ``size`` workers running: restarts the dead with backoff, gives up on a crash
    loop, grows and shrinks on request."""

    def __init__(
        self, ctx: SpawnContext, spec: Any, *, forget: Any = None, target: Any = None
    ) -> None:
        self._ctx = ctx
        self._spec = spec
        """``spec(slot, worker_id) -> WorkerSpec``."""
        self._target = target or run_worker
        """What a worker process runs, ``(spec, cells)``: :func:`run_worker`."""
        self._forget = forget or (lambda worker_id: None)
        self.size = 0
        self.workers: dict[int, Worker] = {}
        self.stopping: list[Worker] = []
        self._crashes: dict[int, int] = {}
        self._restart_at: dict[int, float] = {}
        self._starts = 0
        # Unique among supervisors (host, pid) and restarts (the count); under 64 characters.
        self._prefix = f"{socket.gethostname()[:40]}-{os.getpid()}"

    def _start(self, slot: int) -> None:
        cells = self._ctx.RawArray("d", 4)
        self._starts += 1
        worker_id = f"{self._prefix}-w{slot}-{self._starts}"
        process = self._ctx.Process(
            target=self._target,
            args=(self._spec(slot, worker_id), cells),
            name=f"mlplane-serve-worker-{slot}",
            daemon=False,
        )
        process.start()
        self.workers[slot] = Worker(slot, process, cells, worker_id, time.monotonic())
        log.debug("worker %d started (pid %s)", slot, process.pid)

    def scale_to(self, size: int) -> None:
        self.size = size
        for slot in range(size):
            if slot not in self.workers and slot not in self._restart_at:
                self._start(slot)
        for slot in sorted(self.workers, reverse=True):
            if slot >= size:
                self._stop(self.workers.pop(slot))
        for slot in [s for s in self._restart_at if s >= size]:
            del self._restart_at[slot]

    def _stop(self, w: Worker) -> None:
        w.stop_by = time.monotonic() + GRACEFUL_S + 5.0
        if w.process.is_alive():
            w.process.terminate()  # SIGTERM: uvicorn finishes what it holds
        self.stopping.append(w)

    def sentinels(self) -> list[int]:
        return [w.process.sentinel for w in (*self.workers.values(), *self.stopping)]

    def cells(self) -> list[Any]:
        return [w.cells for w in self.workers.values()]

    def poll(self) -> None:
        """Reap the dead, restart them when their backoff is over, kill stragglers.

        Raises:
            MlplaneError: A worker slot crashed :data:`GIVE_UP_AFTER` times in a row, each
                within :data:`FAST_CRASH_S` seconds of starting.
        """
        now = time.monotonic()
        for w in list(self.stopping):
            if not w.process.is_alive():
                w.process.join()
                self.stopping.remove(w)
                self._forget(w.worker_id)
                log.info("worker %d (pid %s) stopped", w.slot, w.process.pid)
            elif w.stop_by is not None and now > w.stop_by:
                log.warning("worker %d (pid %s) did not stop in time: killed", w.slot, w.pid)
                w.process.kill()
                w.stop_by = None
        for slot, w in list(self.workers.items()):
            if not w.announced and w.cells[READY]:
                w.announced = True
                log.info("worker %d (pid %s) is serving", slot, w.process.pid)
            if w.process.is_alive():
                continue
            w.process.join()
            del self.workers[slot]
            self._forget(w.worker_id)
            lived = now - w.started_at
            crashes = self._crashes.get(slot, 0) + 1 if lived < FAST_CRASH_S else 1
            self._crashes[slot] = crashes
            code = _exit_text(w.process.exitcode)
            if crashes >= GIVE_UP_AFTER:
                raise MlplaneError(
                    f"worker {slot} exited {crashes} times in a row within "
                    f"{FAST_CRASH_S:g} s of starting (last: {code}); see its log above. "
                    "mlplane serve stops rather than restart it forever"
                )
            delay = BACKOFF_S[min(crashes, len(BACKOFF_S)) - 1]
            log.warning(
                "worker %d (pid %s) %s after %.1f s; restarting it in %.1f s",
                slot,
                w.process.pid,
                code,
                lived,
                delay,
            )
            self._restart_at[slot] = now + delay
        for slot, at in list(self._restart_at.items()):
            if at <= now:
                del self._restart_at[slot]
                if slot < self.size:
                    self._start(slot)

    def next_restart_in(self) -> float | None:
        if not self._restart_at:
            return None
        return max(0.0, min(self._restart_at.values()) - time.monotonic())

    def stop_all(self) -> None:
        """SIGTERM every worker and wait for them (killing those past the grace period)."""
        self.size = 0
        self._restart_at.clear()
        for slot in list(self.workers):
            self._stop(self.workers.pop(slot))
        while self.stopping:
            self.poll()
            if self.stopping:
                time.sleep(0.05)


def _exit_text(code: int | None) -> str:
    if code is None:
        return "vanished"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
