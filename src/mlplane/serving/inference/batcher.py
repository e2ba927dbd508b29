"""Adaptive micro-batching: concurrent requests for one model version, one predict call.

Each hosted version has one :class:`Batcher` and one predict thread, so the event loop
keeps parsing while a model predicts and two versions never fight over one thread. The
rule is adaptive, so batching costs nothing at concurrency 1:

* when the thread is idle, a request is predicted at once: the loop only defers the wake-up
  to the end of its current iteration, so requests parsed in the same iteration join it;
* while a predict call runs, arriving requests queue, and the next call takes them all (up
  to ``max_batch_size`` rows), waiting at most ``max_wait_ms`` after the oldest arrived for
  more to fill the batch.

A request is validated before it joins a batch; if a batch still fails, each of its
requests is predicted alone, so one bad request never fails its batch-mates. Results go
back to the loop once per batch (``call_soon_threadsafe``), never once per request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from mlplane.errors import Unavailable

log = logging.getLogger("mlplane.serving.inference")

Delivered = Callable[["list[Item]", "list[Any]", int, float], None]
"""Called on the loop after each batch: items, one result or exception per item, rows, s."""


class Item:
    """One request waiting for its prediction."""

    __slots__ = ("data", "deadline", "future", "rows", "tag", "time")

    def __init__(
        self, data: Any, rows: int, future: asyncio.Future[Any], tag: Any, deadline: float
    ) -> None:
        self.data = data
        self.rows = rows
        self.future = future
        self.tag = tag
        """What the caller needs back at delivery (its traffic counters)."""
        self.time = time.perf_counter()
        self.deadline = deadline
        """Drop the item unpredicted once this perf_counter time has passed (0: never)."""


class Batcher:
    """Groups the requests of one model version into predict calls on its own thread.

    Args:
        predict: Predicts one batch (what ``concat`` made); runs on the batcher's thread.
        concat: Joins the data of several items into one batch.
        split: Cuts a batch's output back into one output per item, given their row counts.
        loop: The event loop whose futures are resolved.
        max_batch_size: Rows per predict call at most (one larger request goes alone).
        max_wait_ms: How long after the oldest queued request a call may wait for more.
        enabled: False predicts each request alone (``batching: off``).
        on_batch: Called on the loop after each batch (counters, outputs).
        name: The thread's name.
    """

    def __init__(
        self,
        predict: Callable[[Any], Any],
        concat: Callable[[list[Any]], Any],
        split: Callable[[Any, Sequence[int]], list[Any]],
        *,
        loop: asyncio.AbstractEventLoop,
        max_batch_size: int = 64,
        max_wait_ms: float = 2.0,
        enabled: bool = True,
        on_batch: Delivered | None = None,
        name: str = "mlplane-predict",
    ) -> None:
        self._predict, self._concat, self._split = predict, concat, split
        self._loop = loop
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.enabled = enabled
        self._on_batch = on_batch
        self._queue: deque[Item] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._kick_pending = False
        self._closed = False
        self._busy = False
        self.queued = 0
        """Items waiting or being predicted (read on the loop: in-flight, unload checks)."""
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- on the event loop -----------------------------------------------------------------

    def submit(self, data: Any, rows: int, tag: Any = None, deadline: float = 0.0) -> Any:
        """Queue one request; returns the future of its output. Call on the loop."""
        if self._closed:
            raise Unavailable("this model version is being unloaded; retry the request")
        future = self._loop.create_future()
        self._queue.append(Item(data, rows, future, tag, deadline))
        self.queued += 1
        if not self._kick_pending:
            # Wake the thread once per loop iteration: what else this iteration parses joins.
            self._kick_pending = True
            self._loop.call_soon(self._kick)
        return future

    def _kick(self) -> None:
        self._kick_pending = False
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        """Stop taking requests; the thread predicts what is queued, then ends."""
        self._closed = True
        with self._cond:
            self._cond.notify()

    @property
    def closed(self) -> bool:
        return self._closed

    def _deliver(self, items: list[Item], results: list[Any], rows: int, seconds: float) -> None:
        self.queued -= len(items)
        for item, result in zip(items, results, strict=True):
            fut = item.future
            if fut.done():  # the caller went away
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
        if self._on_batch is not None:
            try:
                self._on_batch(items, results, rows, seconds)
            except Exception:  # counters must never fail a request
                log.exception("batch accounting failed")

    # -- on the predict thread -------------------------------------------------------------

    def _take(self) -> list[Item] | None:
        """The next batch, or None when closed and drained."""
        queue = self._queue
        with self._cond:
            while not queue:
                if self._closed:
                    return None
                self._busy = False
                self._cond.wait()
            was_busy, self._busy = self._busy, True
        limit = self.max_batch_size if self.enabled else 1
        items = [queue.popleft()]
        rows = items[0].rows
        while queue and rows + queue[0].rows <= limit:
            item = queue.popleft()
            items.append(item)
            rows += item.rows
        if was_busy and rows < limit and self.max_wait_s > 0:
            # These queued while the last call ran: wait for more, up to the oldest's limit.
            deadline = items[0].time + self.max_wait_s
            while rows < limit and not self._closed:
                if queue:
                    if rows + queue[0].rows > limit:
                        break
                    item = queue.popleft()
                    items.append(item)
                    rows += item.rows
                    continue
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                with self._cond:
                    if not queue:
                        self._cond.wait(left)
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            now = time.perf_counter()
            live = [i for i in items if not i.deadline or i.deadline > now]
            expired = [i for i in items if i.deadline and i.deadline <= now]
            start = time.perf_counter()
            results: list[Any] = self._predict_all(live) if live else []
            seconds = time.perf_counter() - start
            rows = sum(i.rows for i in live)
            if expired:
                late = TimeoutError("dropped: its deadline passed while it queued")
                live, results = live + expired, results + [late] * len(expired)
            try:
                self._loop.call_soon_threadsafe(self._deliver, live, results, rows, seconds)
            except RuntimeError:  # the loop is closed: the server is gone
                return

    def _predict_all(self, items: list[Item]) -> list[Any]:
        try:
            if len(items) == 1:
                return [self._predict(items[0].data)]
            out = self._predict(self._concat([i.data for i in items]))
            return self._split(out, [i.rows for i in items])
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        # One request may have broken the batch: predict each alone.
        results: list[Any] = []
        for item in items:
            try:
                results.append(self._predict(item.data))
            except Exception as exc:
                results.append(exc)
        return results
