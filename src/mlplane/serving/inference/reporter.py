"""The reporter: a worker's traffic windows and heartbeats, sent off the request path.

Every ``flush_s`` seconds it swaps the gathered traffic out on the event loop (a few
list swaps), then, in a thread, folds it into :class:`~mlplane.serving.stats.WindowStats`
and sends the finished windows with
:meth:`~mlplane.serving.service.DeploymentService.record_windows` and the worker's state
with ``heartbeat_worker``. Windows that could not be sent are kept (up to
:data:`MAX_UNSENT`) and sent with the next flush. On shutdown it flushes once more and
forgets the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from typing import Any

from mlplane.serving.inference.hosting import SERVE, Host
from mlplane.serving.inference.metrics import Meter

log = logging.getLogger("mlplane.serving.inference")
MAX_UNSENT = 10_000
QUIET_S = 60.0


class Reporter:
    """Sends one worker's windows and heartbeats; see the module docstring."""

    def __init__(
        self, services: Any, meter: Meter, host: Host, worker_id: str, flush_s: float
    ) -> None:
        self.services = services
        self.meter = meter
        self.host = host
        self.worker_id = worker_id
        self.flush_s = flush_s
        self._unsent: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._last_logged = 0.0
        self.pid, self.hostname = os.getpid(), socket.gethostname()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()

    async def flush(self) -> None:
        folded = self.meter.fold()  # on the loop: only swaps lists
        state = self.host.state()
        await asyncio.to_thread(self._send, folded, state)

    def _send(self, folded: Any, state: dict[str, Any]) -> None:
        with self._lock:  # a flush at shutdown may meet the periodic one
            self.meter.absorb(folded)
            windows = self._unsent + self.meter.windows()
            self._unsent = []
            deployments = self.services.deployments
            try:
                deployments.record_windows(SERVE, windows)
            except Exception:
                self._unsent = windows[-MAX_UNSENT:]
                self._log("cannot record traffic windows; keeping them for the next flush")
            try:
                deployments.heartbeat_worker(
                    SERVE, self.worker_id, pid=self.pid, host=self.hostname, state=state
                )
            except Exception:
                self._log("cannot record the worker's heartbeat")

    def _log(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_logged >= QUIET_S:
            log.exception(message)
            self._last_logged = now

    async def close(self) -> None:
        """The last flush, then the worker is forgotten."""
        await self.flush()
        try:
            await asyncio.to_thread(self.services.deployments.forget_worker, SERVE, self.worker_id)
        except Exception:
            log.exception("cannot forget worker %s", self.worker_id)
