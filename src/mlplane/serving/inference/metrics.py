"""What one worker counts: traffic per deployment, version and kind; its Prometheus page.

The hot path only appends to lists and adds to integers of a :class:`Traffic`, on the
event loop. Every flush (and every scrape) :meth:`Traffic.fold` swaps those lists out on
the loop, and :meth:`Traffic.absorb`, in a thread, folds them into the window the reporter
sends (:class:`~mlplane.serving.stats.WindowStats`) and into the cumulative counters and
histograms ``/metrics`` shows.

Registries are per worker (not prometheus_client's multiprocess mode): each worker's
``/metrics`` shows its own numbers with a ``worker`` label, so a scrape through the shared
port sees one worker; scrape each worker, or sum the ``worker`` series, to see them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from mlplane.db.engine import now_ms
from mlplane.errors import InvalidInput
from mlplane.serving.stats import OutputStats, Sketch, WindowStats

LATENCY_BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class _Raw:
    __slots__ = ("batch_rows", "errors", "latencies", "outputs", "rejected", "requests", "rows")

    def __init__(self, t: Traffic) -> None:
        self.latencies, self.batch_rows, self.outputs = t.latencies, t.batch_rows, t.outputs
        self.requests, self.errors, self.rejected, self.rows = (
            t.requests,
            t.errors,
            t.rejected,
            t.rows,
        )


class Traffic:
    """The traffic of one version of one deployment, of one kind (live or shadow)."""

    def __init__(self, deployment_id: int, deployment: str, version: int, kind: str) -> None:
        self.deployment_id, self.deployment, self.version, self.kind = (
            deployment_id,
            deployment,
            version,
            kind,
        )
        self._reset()
        self.inflight = 0
        self.dropped = 0
        """Shadow copies not sent because too many were in flight (cumulative)."""
        self.total_requests = self.total_errors = self.total_rejected = self.total_rows = 0
        self._lat = np.zeros(len(LATENCY_BUCKETS_MS) + 1, dtype=np.int64)
        self._lat_sum = 0.0
        self._batch = np.zeros(len(BATCH_BUCKETS) + 1, dtype=np.int64)
        self._batch_sum = 0.0
        self._lock = threading.Lock()
        self._window: WindowStats | None = None
        self._window_start = now_ms()

    def _reset(self) -> None:
        self.latencies: list[float] = []
        self.batch_rows: list[int] = []
        self.outputs: list[Any] = []
        self.requests = self.errors = self.rejected = self.rows = 0

    # -- the hot path (event loop) -----------------------------------------------------------

    def answered(self, latency_ms: float, rows: int, status: int) -> None:
        """One request that reached the model (2xx, or 5xx counted as an error)."""
        self.requests += 1
        self.rows += rows
        self.latencies.append(latency_ms)
        if status >= 500:
            self.errors += 1

    def fold(self) -> _Raw:
        """Swap out what the hot path gathered (on the loop); absorb it elsewhere."""
        raw = _Raw(self)
        self._reset()
        return raw

    # -- off the loop --------------------------------------------------------------------------

    def absorb(self, raw: _Raw) -> None:
        """Fold gathered traffic into the pending window and the cumulative counters."""
        if not (raw.requests or raw.rejected or raw.latencies):
            return
        lat = np.asarray(raw.latencies, dtype=np.float64)
        batches = np.asarray(raw.batch_rows, dtype=np.float64)
        w = WindowStats(
            requests=raw.requests,
            errors=raw.errors,
            rejected=raw.rejected,
            rows=raw.rows,
            latency_ms=Sketch(),
            outputs=OutputStats(),
            batch_sizes=Sketch(),
        )
        w.latency_ms.add_many(lat)
        w.batch_sizes.add_many(batches)
        _count_outputs(w.outputs, raw.outputs)
        with self._lock:
            if self._window is None:
                self._window = w
            else:
                self._window.merge(w)
            self.total_requests += raw.requests
            self.total_errors += raw.errors
            self.total_rejected += raw.rejected
            self.total_rows += raw.rows
            self._lat += np.bincount(
                np.searchsorted(LATENCY_BUCKETS_MS, lat, side="left"), minlength=self._lat.size
            )
            self._lat_sum += float(lat.sum())
            self._batch += np.bincount(
                np.searchsorted(BATCH_BUCKETS, batches, side="left"), minlength=self._batch.size
            )
            self._batch_sum += float(batches.sum())

    def take_window(self, worker: str) -> dict[str, Any] | None:
        """The window since the last one, as ``record_windows`` takes it (None if empty)."""
        end = now_ms()
        with self._lock:
            w, start = self._window, self._window_start
            self._window, self._window_start = None, end
        if w is None:
            return None
        return {
            "deployment_id": self.deployment_id,
            "version": self.version,
            "kind": self.kind,
            "worker": worker,
            "window_start": start,
            "window_end": max(end, start + 1),
            "stats": w.to_dict(),
        }

    def histograms(self) -> tuple[list[tuple[str, float]], float, list[tuple[str, float]], float]:
        with self._lock:
            lat = _cumulative(LATENCY_BUCKETS_MS, self._lat, scale=1000.0)
            batch = _cumulative(BATCH_BUCKETS, self._batch)
            return lat, self._lat_sum / 1000.0, batch, self._batch_sum


def _count_outputs(stats: OutputStats, outputs: list[Any]) -> None:
    # One add for all the arrays that stack (np.unique per request would cost more).
    arrays = [o for o in outputs if isinstance(o, np.ndarray)]
    others = [o for o in outputs if not isinstance(o, np.ndarray)]
    try:
        batches: list[Any] = [np.concatenate(arrays)] if arrays else []
    except ValueError:
        batches = list(arrays)
    for out in batches + others:
        try:
            stats.add(out)
        except (InvalidInput, TypeError, ValueError):
            pass  # outputs it cannot summarise (strings in 2-D, frames of objects)


def _cumulative(bounds: Any, counts: np.ndarray, scale: float = 1.0) -> list[tuple[str, float]]:
    running = np.cumsum(counts)
    out = [(f"{b / scale:g}", float(running[i])) for i, b in enumerate(bounds)]
    out.append(("+Inf", float(running[-1])))
    return out


class Meter:
    """Every :class:`Traffic` of this worker, by (deployment id, version, kind)."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._traffic: dict[tuple[int, int, str], Traffic] = {}
        self._gone: set[int] = set()

    def traffic(self, deployment_id: int, name: str, version: int, kind: str) -> Traffic:
        key = (deployment_id, version, kind)
        t = self._traffic.get(key)
        if t is None:
            t = self._traffic[key] = Traffic(deployment_id, name, version, kind)
        self._gone.discard(deployment_id)
        return t

    def all(self) -> list[Traffic]:
        return list(self._traffic.values())

    def forget(self, deployment_id: int) -> None:
        """The deployment is gone: drop its counters after their last window is taken."""
        self._gone.add(deployment_id)

    def fold(self) -> list[tuple[Traffic, _Raw]]:
        """On the loop: swap every traffic's gathered lists out."""
        return [(t, t.fold()) for t in self._traffic.values()]

    @staticmethod
    def absorb(folded: list[tuple[Traffic, _Raw]]) -> None:
        for t, raw in folded:
            t.absorb(raw)

    def windows(self) -> list[dict[str, Any]]:
        out = [w for t in list(self._traffic.values()) if (w := t.take_window(self.worker))]
        for key in [k for k in self._traffic if k[0] in self._gone]:
            del self._traffic[key]
        return out

    def render(self, extra: Callable[[], Iterator[Metric]]) -> bytes:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self, extra))  # type: ignore[arg-type]
        return generate_latest(registry)


class _Collector:
    def __init__(self, meter: Meter, extra: Callable[[], Iterator[Metric]]) -> None:
        self.meter, self.extra = meter, extra

    def collect(self) -> Iterator[Metric]:
        labels = ["worker", "deployment", "version", "kind"]
        w = self.meter.worker
        reqs = CounterMetricFamily(
            "mlplane_inference_requests", "Requests by status class", labels=[*labels, "status"]
        )
        errs = CounterMetricFamily("mlplane_inference_errors", "5xx answers", labels=labels)
        rows = CounterMetricFamily("mlplane_inference_rows", "Rows predicted", labels=labels)
        lat = HistogramMetricFamily(
            "mlplane_inference_latency_seconds", "Time to answer a request", labels=labels
        )
        batch = HistogramMetricFamily(
            "mlplane_inference_batch_rows",
            "Rows of the batch a request was predicted in",
            labels=labels,
        )
        inflight = GaugeMetricFamily(
            "mlplane_inference_inflight", "Requests waiting for the model", labels=labels
        )
        dropped = CounterMetricFamily(
            "mlplane_inference_shadow_dropped",
            "Shadow copies dropped: too many in flight",
            labels=labels,
        )
        for t in self.meter.all():
            values = [w, t.deployment, str(t.version), t.kind]
            ok = t.total_requests - t.total_errors
            reqs.add_metric([*values, "2xx"], ok)
            reqs.add_metric([*values, "4xx"], t.total_rejected)
            reqs.add_metric([*values, "5xx"], t.total_errors)
            errs.add_metric(values, t.total_errors)
            rows.add_metric(values, t.total_rows)
            lat_buckets, lat_sum, batch_buckets, batch_sum = t.histograms()
            lat.add_metric(values, lat_buckets, lat_sum)
            batch.add_metric(values, batch_buckets, batch_sum)
            inflight.add_metric(values, t.inflight)
            if t.kind == "shadow":
                dropped.add_metric(values, t.dropped)
        yield from (reqs, errs, rows, lat, batch, inflight, dropped)
        yield from self.extra()
