"""The supervisor of ``mlplane serve``: the worker pool's loop (restarts, autoscaling,
signals) in the main thread and the control loop (canary checks, pruning) in another; see
:mod:`mlplane.serving.supervisor` for the process model."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait
from types import FrameType
from typing import Any

from mlplane.security import Principal
from mlplane.serving._autoscale import DEFAULT_TARGET, SAMPLE_S, Autoscaler, LoadReader
from mlplane.serving._workers import WorkerPool, WorkerSpec, log_to_stderr

log = logging.getLogger("mlplane.serving.supervisor")

SYSTEM = Principal("mlplane-serve", is_platform_admin=True, source="serve")
"""Who the supervisor and its workers act as: audit events of canary steps name it."""
PRUNE_EVERY_S = 60.0
KEEP_WINDOWS_MS = 7 * 24 * 3600 * 1000
REFRESH_S = 5.0
"""How often the supervisor re-reads the hosted deployments (their ``target_inflight``)."""


class Supervisor:
    """The supervisor of :func:`~mlplane.serving.supervisor.serve`; built by
    :func:`~mlplane.serving.supervisor.prepare`, started by :meth:`run`."""

    def __init__(
        self,
        *,
        services: Any,
        family: int,
        address: tuple[Any, ...],
        held: Any,
        host: str,
        workers: int,
        min_workers: int,
        only: tuple[str, ...] | None,
        auth: str,
        tls: tuple[str, str] | None,
        log_level: str,
        poll_s: float,
        hosted: list[Any],
    ) -> None:
        self.services = services
        self.hosted = hosted
        self.workers, self.min_workers = workers, min_workers
        self.port = int(address[1])
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        self.url = f"{'https' if tls else 'http'}://{shown}:{self.port}"
        self._held = held
        self._only = only
        self._spec = dict(
            family=family,
            address=address,
            settings=services.settings,
            auth=auth,
            only=only,
            poll_s=poll_s,
            log_level=log_level,
            tls=tls,
        )
        self._log_level = log_level
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._wake = os.pipe()  # a signal wakes the supervisor's wait() at once
        self.target: float = self._target()

    # -- the loops ---------------------------------------------------------------------------

    def run(self) -> None:
        """Start the workers and the control loop; return after SIGINT/SIGTERM once every
        worker has stopped."""
        log_to_stderr(self._log_level, "supervisor")
        ctx = multiprocessing.get_context("spawn")
        pool = WorkerPool(
            ctx,
            lambda slot, worker_id: WorkerSpec(worker_id=worker_id, slot=slot, **self._spec),
            forget=self._forget,
        )
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        control = threading.Thread(target=self._control, name="mlplane-control", daemon=True)
        scaler = Autoscaler(minimum=self.min_workers, maximum=self.workers)
        reader = LoadReader()
        try:
            pool.scale_to(self.min_workers)
            control.start()
            next_sample = time.monotonic() + SAMPLE_S
            while not self._stop.is_set():
                timeout = max(0.0, next_sample - time.monotonic())
                restart = pool.next_restart_in()
                ready = wait(
                    [*pool.sentinels(), self._wake[0]],
                    min(timeout, restart if restart is not None else 1.0),
                )
                if self._wake[0] in ready:
                    os.read(self._wake[0], 64)
                pool.poll()
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + SAMPLE_S
                    inflight = reader.sample(pool.cells(), now)
                    size = scaler.decide(inflight, self.target, pool.size, now)
                    if size != pool.size:
                        log.info(
                            "scaling %s to %d workers: %.1f requests in flight, target %g per "
                            "worker",
                            "up" if size > pool.size else "down",
                            size,
                            inflight,
                            self.target,
                        )
                        pool.scale_to(size)
        finally:
            log.info("stopping %d worker(s)", len(pool.workers))
            self._stop.set()
            try:
                pool.stop_all()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                control.join(timeout=10)
                self._held.close()
                self.services.close()
                for fd in self._wake:
                    os.close(fd)
        log.info("stopped")

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._stop.set()
        os.write(self._wake[1], b"!")

    def _forget(self, worker_id: str) -> None:
        try:
            self.services.deployments.forget_worker(SYSTEM, worker_id)
        except Exception as exc:
            log.warning("could not drop the heartbeat of %s: %s", worker_id, exc)

    def _control(self) -> None:
        """Canary checks, pruning, the hosted deployments' targets: errors logged, never
        fatal (the workers serve on while the database is away)."""
        throttle = _Throttle()
        next_prune = time.monotonic() + PRUNE_EVERY_S
        next_refresh = time.monotonic() + REFRESH_S
        deployments = self.services.deployments
        while not self._stop.wait(self._poll_s):
            try:
                for decided in deployments.advance_rollouts(SYSTEM):
                    log.info(
                        "deployment %s: canary check %s (%s)",
                        decided.get("deployment"),
                        decided.get("verdict"),
                        decided.get("outcome"),
                    )
                now = time.monotonic()
                if now >= next_refresh:
                    next_refresh = now + REFRESH_S
                    self.target = self._target()
                if now >= next_prune:
                    next_prune = now + PRUNE_EVERY_S
                    dropped = deployments.prune(SYSTEM, older_than_ms=KEEP_WINDOWS_MS)
                    if dropped:
                        log.debug("pruned %d traffic windows older than 7 days", dropped)
            except Exception as exc:
                throttle.warn(f"the control loop failed: {type(exc).__name__}: {exc}")

    def _target(self) -> float:
        """The smallest ``target_inflight`` of the hosted deployments."""
        targets = [
            d.config.target_inflight
            for d in self.services.deployments.active(SYSTEM)
            if self._only is None or d.name in self._only
        ]
        return min(targets) if targets else DEFAULT_TARGET


class _Throttle:
    """Logs a repeating error once a minute, with how often it repeated meanwhile."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._last: tuple[str, float] | None = None
        self._repeats = 0

    def warn(self, message: str) -> None:
        now = time.monotonic()
        if self._last and self._last[0] == message and now - self._last[1] < self.every_s:
            self._repeats += 1
            return
        suffix = f" (and {self._repeats} more times)" if self._repeats else ""
        log.warning("%s%s", message, suffix)
        self._last, self._repeats = (message, now), 0
