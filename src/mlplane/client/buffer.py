"""Background batching of metric points: the training loop never waits on I/O.

``add`` appends to a list (a few microseconds); a daemon thread sends the
points in batches when ``flush_max_points`` accumulate or every
``flush_interval_s``, and sends heartbeats for watched runs. ``flush``
drains synchronously (called by ``end_run``, at exit and on SIGTERM).
Transient failures are retried with backoff by the transport; points that
still cannot be delivered are counted in ``dropped`` and reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence

from mlplane.errors import MlplaneError
from mlplane.tracking.entities import Metric

log = logging.getLogger("mlplane")

SendFn = Callable[[str, Sequence[Metric]], None]
BeatFn = Callable[[Sequence[str]], None]


class MetricBuffer:
    def __init__(
        self,
        send: SendFn,
        *,
        heartbeat: BeatFn | None = None,
        flush_interval_s: float = 1.0,
        flush_max_points: int = 20_000,
        buffer_max_points: int = 2_000_000,
        heartbeat_interval_s: float = 15.0,
    ) -> None:
        self._send = send
        self._beat = heartbeat
        self._interval = flush_interval_s
        self._max = flush_max_points
        self._cap = buffer_max_points
        self._beat_interval = heartbeat_interval_s
        self._points: deque[tuple[str, str, float, int, int]] = deque()
        self._wake = threading.Event()
        self._drained = threading.Condition()
        self._send_lock = threading.Lock()
        self._stop = False
        self._watched: set[str] = set()
        self.dropped = 0
        self.sent = 0
        self._thread: threading.Thread | None = None

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="mlplane-metrics", daemon=True)
            self._thread.start()

    def add(self, run_id: str, key: str, value: float, timestamp: int, step: int) -> None:
        """Queue one point. Blocks only when the buffer is full (backpressure)."""
        points = self._points
        points.append((run_id, key, value, timestamp, step))
        n = len(points)
        if n >= self._max:
            self._ensure_thread()
            self._wake.set()
            if n >= self._cap:
                self.flush()
        elif self._thread is None:
            self._ensure_thread()

    def watch(self, run_id: str) -> None:
        """Send heartbeats for ``run_id`` until :meth:`unwatch`."""
        self._watched.add(run_id)
        self._ensure_thread()

    def unwatch(self, run_id: str) -> None:
        self._watched.discard(run_id)

    def pending(self) -> int:
        return len(self._points)

    def flush(self) -> int:
        """Send everything queued now; returns the number of points dropped so far."""
        with self._send_lock:
            self._drain()
        return self.dropped

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _drain(self) -> None:
        # deque.append and popleft are atomic: points added meanwhile wait for the next drain.
        points = self._points
        batch = [points.popleft() for _ in range(len(points))]
        if not batch:
            return
        by_run: dict[str, list[Metric]] = defaultdict(list)
        for run_id, key, value, ts, step in batch:
            by_run[run_id].append(Metric(key, value, ts, step))
        for run_id, run_points in by_run.items():
            for i in range(0, len(run_points), self._max):
                chunk = run_points[i : i + self._max]
                try:
                    self._send(run_id, chunk)
                    self.sent += len(chunk)
                except MlplaneError as exc:
                    self.dropped += len(chunk)
                    log.error(
                        "mlplane: dropped %d metric points of run %s: %s", len(chunk), run_id, exc
                    )

    def _loop(self) -> None:
        next_beat = time.monotonic() + self._beat_interval
        while not self._stop:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                with self._send_lock:
                    self._drain()
                if self._beat and self._watched and time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self._beat_interval
                    self._beat(sorted(self._watched))
            except Exception as exc:  # never kill the user's process from here
                log.warning("mlplane: background send failed: %s", exc)
