"""Shadow traffic: a sampled copy of requests for the shadow version, answer discarded.

The copy is parsed for the shadow's own signature and queued on the shadow version's
batcher (its own thread) after the live request is queued; the caller never waits for it.
At most :data:`MAX_INFLIGHT` copies per deployment are in flight: more are dropped and
counted (``mlplane_inference_shadow_dropped``), so a slow shadow cannot pile up work. A
copy still queued after ``shadow_timeout_ms`` is dropped, and one answered later than
that counts as an error, like one that raised: a ``kind="shadow"`` window holds the
shadow's latency, errors and outputs.
"""

from __future__ import annotations

import functools
import random
import time
from typing import Any

from mlplane.errors import MlplaneError
from mlplane.serving.inference import protocols
from mlplane.serving.inference.hosting import Hosted, Served
from mlplane.serving.inference.metrics import Traffic

MAX_INFLIGHT = 64


class Mirror:
    """Sends the sampled share of a deployment's requests to its shadow version."""

    def __init__(self, max_inflight: int = MAX_INFLIGHT) -> None:
        self.max_inflight = max_inflight

    def maybe(self, hosted: Hosted, served: Served, kind: str, body: Any, start: float) -> None:
        shadow, routing = served.shadow, served.deployment.routing
        if shadow is None or routing.shadow is None:
            return
        percent = routing.shadow.percent
        if percent < 100 and random.random() * 100 >= percent:
            return
        traffic = shadow.shadow
        if hosted.shadow_inflight >= self.max_inflight:
            traffic.dropped += 1
            return
        try:
            if kind == "oip":
                data, rows = protocols.infer_data(shadow.reader, body)
            else:
                data, rows = protocols.read_predict(shadow.reader, body)
        except MlplaneError:
            traffic.rejected += 1  # the shadow's signature refuses what the live one took
            return
        timeout_s = served.deployment.config.shadow_timeout_ms / 1000.0
        sent = time.perf_counter()
        future = shadow.submit(data, rows, traffic, deadline=sent + timeout_s)
        hosted.shadow_inflight += 1
        future.add_done_callback(
            functools.partial(_done, hosted, traffic, sent, rows, timeout_s * 1000.0)
        )


def _done(
    hosted: Hosted, traffic: Traffic, sent: float, rows: int, timeout_ms: float, future: Any
) -> None:
    hosted.shadow_inflight -= 1
    latency = (time.perf_counter() - sent) * 1000.0
    failed = future.cancelled() or future.exception() is not None or latency > timeout_ms
    traffic.answered(latency, rows, 500 if failed else 200)
