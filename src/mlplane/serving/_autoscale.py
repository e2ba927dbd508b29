"""How many worker processes ``mlplane serve`` wants, from the requests in flight.

Each worker's process counts the HTTP requests it is handling in three shared doubles
(:class:`Meter`): the count now, and its integral over time (busy request-seconds) as of the
last change. The supervisor reads them every :data:`SAMPLE_S` seconds, without a lock
(one writer per worker, 8-byte stores), and takes the *mean* number in flight over the last
interval: the integral's growth over the interval's length (Little's law). A snapshot of the
count instead would swing between 0 and the burst size with requests of a millisecond.

Shared memory rather than the heartbeats in ``serving_workers``: it is read in
microseconds with no database write per request or per sample, and it is exact for the
interval, where heartbeats are seconds apart. The heartbeats keep their purpose: the
per-deployment view in ``mlplane deploy status``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

SAMPLE_S = 1.0
"""How often the supervisor samples the load and decides."""
COOLDOWN_S = 30.0
"""The pool shrinks only after the load has stayed below what it needs this long."""
DEFAULT_TARGET = 8.0
"""Requests in flight per worker when no hosted deployment says (the config's default)."""

_COUNT, _BUSY, _SINCE = 0, 1, 2
_EXEMPT = ("/v2/health", "/metrics", "/healthz", "/readyz")
"""Probes and scrapes are not load."""


class Meter:
    """ASGI middleware in a worker: counts its requests in flight into ``cells`` (a
    ``multiprocessing`` RawArray of 3 doubles) and names the worker in a response header."""

    def __init__(self, app: Any, cells: Any, worker_id: str, header: bytes) -> None:
        self.app = app
        self.cells = cells
        self.header = (header, worker_id.encode())

    def _add(self, delta: float) -> None:
        c, now = self.cells, time.monotonic()
        c[_BUSY] += c[_COUNT] * (now - c[_SINCE])
        c[_SINCE] = now
        c[_COUNT] += delta

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = self.header

        async def send_named(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        if scope["path"].startswith(_EXEMPT):
            await self.app(scope, receive, send_named)
            return
        self._add(1.0)
        try:
            await self.app(scope, receive, send_named)
        finally:
            self._add(-1.0)


def busy_seconds(cells: Any, now: float) -> float:
    """The integral of the count in flight up to ``now`` (monotonic clock, all processes)."""
    count, busy, since = cells[_COUNT], cells[_BUSY], cells[_SINCE]
    return float(busy + count * max(0.0, now - since)) if since else float(busy)


class LoadReader:
    """The mean number of requests in flight, summed over the workers, between samples."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}  # id(cells) -> (time, busy seconds)

    def sample(self, cells: Iterable[Any], now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        total, seen = 0.0, {}
        for c in cells:
            busy = busy_seconds(c, now)
            last = self._last.get(id(c))
            if last is not None and now > last[0]:
                total += max(0.0, busy - last[1]) / (now - last[0])
            else:  # a worker new since the last sample: what it holds now
                total += max(0.0, float(c[_COUNT]))
            seen[id(c)] = (now, busy)
        self._last = seen
        return total


class Autoscaler:
    """``desired = clamp(ceil(in flight / target), max(1, minimum), maximum)``: up at once,
    down only after :data:`COOLDOWN_S` seconds below the current size's need."""

    def __init__(self, *, minimum: int, maximum: int, cooldown_s: float = COOLDOWN_S) -> None:
        self.minimum = max(1, minimum)
        self.maximum = maximum
        self.cooldown_s = cooldown_s
        self._below_since: float | None = None

    def want(self, inflight: float, target: float) -> int:
        need = math.ceil(inflight / target - 1e-9) if inflight > 0 else 0
        return min(self.maximum, max(self.minimum, need))

    def decide(self, inflight: float, target: float, current: int, now: float) -> int:
        want = self.want(inflight, target)
        if want >= current:
            self._below_since = None
            return want
        if self._below_since is None:
            self._below_since = now
        if now - self._below_since >= self.cooldown_s:
            self._below_since = None
            return want
        return current
