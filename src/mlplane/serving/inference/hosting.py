"""The deployments a worker hosts: their loaded versions, swapped atomically on a change.

A :class:`Hosted` deployment holds a :class:`Served` (its routing, a router and the
loaded :class:`Version` objects it routes to); a change builds a new ``Served`` with the
new versions loaded and warmed beside the old ones, then puts it in force with one
assignment. A request takes the ``Served`` in force when it arrives and keeps its objects
to the end, so none is dropped; a version no longer routed is closed, and its predict
thread ends once the requests it holds are answered.

Scale to zero: a deployment with ``min_replicas = 0`` idle for ``scale_to_zero_after_s``
is unloaded (``served`` becomes None); the next request loads it again (a cold start,
timed and reported).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from mlplane.db.engine import now_ms
from mlplane.errors import Conflict, NotFound
from mlplane.registry.flavors import get as get_flavor
from mlplane.registry.flavors.base import PyFuncModel
from mlplane.registry.signature import Signature
from mlplane.security import Principal
from mlplane.serving.entities import Deployment, DeploymentConfig
from mlplane.serving.inference.batcher import Batcher, Item
from mlplane.serving.inference.metrics import Meter, Traffic
from mlplane.serving.inference.predictors import Predictor, read_example
from mlplane.serving.inference.protocols import output_names
from mlplane.serving.inference.readers import Reader
from mlplane.serving.routing import Router

log = logging.getLogger("mlplane.serving.inference")

SERVE = Principal("mlplane-serve", is_platform_admin=True, source="serve")
"""Who a worker acts as towards the services (reads deployments, loads models, reports)."""
RETRY_S = 10.0
"""A deployment that failed to load is tried again after this long."""


class Version:
    """One loaded, warmed model version of a deployment, with its predict thread."""

    def __init__(
        self,
        deployment: Deployment,
        number: int,
        flavor: str,
        predictor: Predictor,
        loop: asyncio.AbstractEventLoop,
        meter: Meter,
    ) -> None:
        self.number = number
        self.label = str(number)
        self.header = self.label.encode()
        self.flavor = flavor
        self.predictor = predictor
        self.reader = Reader(predictor)
        self.outputs = output_names(predictor)
        self.live = meter.traffic(deployment.deployment_id, deployment.name, number, "live")
        self.shadow = meter.traffic(deployment.deployment_id, deployment.name, number, "shadow")
        cfg = deployment.config
        self.batcher = Batcher(
            predictor.predict,
            predictor.concat,
            predictor.split,
            loop=loop,
            max_batch_size=cfg.max_batch_size,
            max_wait_ms=cfg.max_wait_ms,
            enabled=self._batching(cfg),
            on_batch=_on_batch,
            name=f"mlplane-predict-{deployment.name}-{number}",
        )

    def _batching(self, cfg: DeploymentConfig) -> bool:
        return cfg.batching == "on" or (cfg.batching == "auto" and self.predictor.batching_helps)

    def configure(self, cfg: DeploymentConfig) -> None:
        self.batcher.max_batch_size = cfg.max_batch_size
        self.batcher.max_wait_s = cfg.max_wait_ms / 1000.0
        self.batcher.enabled = self._batching(cfg)

    def submit(self, data: Any, rows: int, traffic: Traffic, deadline: float = 0.0) -> Any:
        traffic.inflight += 1
        return self.batcher.submit(data, rows, traffic, deadline)


def _on_batch(items: list[Item], results: list[Any], rows: int, _: float) -> None:
    for item, result in zip(items, results, strict=True):
        t: Traffic = item.tag
        t.inflight -= 1
        t.batch_rows.append(rows)
        if not isinstance(result, BaseException):
            t.outputs.append(result)


class Served:
    """What one deployment serves now; replaced whole, never changed in place."""

    __slots__ = ("deployment", "router", "shadow", "sticky", "versions")

    def __init__(self, deployment: Deployment, versions: dict[int, Version]) -> None:
        routing = deployment.routing
        self.deployment = deployment
        self.versions = versions
        self.router = Router(
            [(v.version, v.weight) for v in routing.variants], salt=deployment.name
        )
        self.shadow = versions[routing.shadow.version] if routing.shadow else None
        self.sticky = routing.sticky_header.lower().encode() if routing.sticky_header else None

    def choose(self, headers: dict[bytes, bytes]) -> Version:
        key = headers.get(self.sticky) if self.sticky is not None else None
        return self.versions[self.router.choose(key)]


class Hosted:
    """One deployment on this worker: what it serves, when it was last called."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.served: Served | None = None
        self.lock = asyncio.Lock()
        self.loading: asyncio.Task[None] | None = None
        self.last_request = time.monotonic()
        self.last_request_ms: int | None = None
        self.requests = 0
        self.cold_starts = 0
        self.cold_start_ms: float | None = None
        self.error: str | None = None
        self.shadow_inflight = 0

    def versions(self) -> list[Version]:
        return list(self.served.versions.values()) if self.served is not None else []


class Host:
    """Loads, swaps and unloads the deployments of one worker (on its event loop)."""

    def __init__(self, services: Any, meter: Meter, *, only: set[str] | None = None) -> None:
        self.services = services
        self.meter = meter
        self.only = only
        self.hosted: dict[int, Hosted] = {}
        self.by_name: dict[str, list[Hosted]] = {}
        self.generations: dict[int, int] = {}
        self._retry_at: dict[int, float] = {}
        self.ready = False
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- finding -----------------------------------------------------------------------------

    def find(self, name: str, project: bytes | None = None) -> Hosted:
        found = self.by_name.get(name)
        if not found:
            known = ", ".join(sorted(self.by_name)[:20]) or "none"
            raise NotFound(f"no deployment named {name!r} is served here; deployments: {known}")
        if len(found) == 1 and project is None:
            return found[0]
        wanted = project.decode("latin-1") if project is not None else None
        for h in found:
            if h.deployment.project == wanted:
                return h
        if wanted is not None:
            raise NotFound(f"no deployment named {name!r} in project {wanted!r} is served here")
        projects = ", ".join(sorted(h.deployment.project for h in found))
        raise Conflict(
            f"deployment {name!r} exists in several projects ({projects}): "
            "name one in the X-Mlplane-Project header"
        )

    def only_one(self) -> Hosted:
        if len(self.hosted) != 1:
            names = ", ".join(sorted(self.by_name)) or "none"
            raise NotFound(
                f"this server hosts {len(self.hosted)} deployments ({names}): name one in the "
                "X-Mlplane-Deployment header"
            )
        return next(iter(self.hosted.values()))

    # -- keeping up with the database ---------------------------------------------------------

    def _wanted(self, d: Deployment) -> bool:
        return self.only is None or d.name in self.only or f"{d.project}/{d.name}" in self.only

    async def sync(self) -> None:
        """Pick up created, changed and deleted deployments (the watcher calls this)."""
        deployments = self.services.deployments
        gens: dict[int, int] = await asyncio.to_thread(deployments.generations, SERVE)
        now = time.monotonic()
        changed = [
            i
            for i, g in gens.items()
            if self.generations.get(i) != g and self._retry_at.get(i, 0.0) <= now
        ]
        if changed:
            for d in await asyncio.to_thread(deployments.active, SERVE, changed):
                if self._wanted(d):
                    try:
                        await self.apply(d)
                    except Exception:  # logged by apply; the others still load
                        continue
                else:
                    self.generations[d.deployment_id] = d.generation
        for gone in [i for i in self.generations if i not in gens]:
            self.generations.pop(gone, None)
            self._remove(gone)
        self.ready = True

    async def apply(self, d: Deployment, *, load: bool = False) -> None:
        """Put ``d`` in force: load what it routes to, then swap (or just note it while it
        is scaled to zero, unless ``load``)."""
        hosted = self.hosted.get(d.deployment_id)
        if hosted is None:
            hosted = self.hosted[d.deployment_id] = Hosted(d)
            self.by_name.setdefault(d.name, []).append(hosted)
            load = True
        async with hosted.lock:
            hosted.deployment = d
            if hosted.served is None and not load:
                self.generations[d.deployment_id] = d.generation
                return
            current = hosted.served.versions if hosted.served is not None else {}
            wanted = d.routing.versions()
            versions: dict[int, Version] = {}
            try:
                for number in wanted:
                    if number in current:
                        versions[number] = current[number]
                        versions[number].configure(d.config)
                    else:
                        versions[number] = await asyncio.to_thread(self._load, d, number)
            except Exception as exc:
                for number, v in versions.items():
                    if number not in current:
                        v.batcher.close()
                hosted.error = f"{type(exc).__name__}: {exc}"
                self._retry_at[d.deployment_id] = time.monotonic() + RETRY_S
                log.exception("deployment %s: loading failed", d.name)
                raise
            if hosted.served is None:
                hosted.last_request = time.monotonic()  # idle counts from when it can answer
            hosted.served = Served(d, versions)  # the swap: one assignment
            hosted.error = None
            self.generations[d.deployment_id] = d.generation
            self._retry_at.pop(d.deployment_id, None)
            for number, v in current.items():
                if number not in versions:
                    v.batcher.close()
            log.info("deployment %s generation %d: versions %s", d.name, d.generation, wanted)

    def _load(self, d: Deployment, number: int) -> Version:
        """Fetch (verified), load and warm one version; runs in a thread."""
        assert self.loop is not None
        mv, folder, info = self.services.registry.fetch(
            SERVE, f"{d.model}@{number}", project=d.project
        )
        flavor = get_flavor(mv.flavor)
        native = flavor.load(folder / "model", info)
        signature = Signature.from_dict(mv.signature) if mv.signature else None
        predictor = Predictor(PyFuncModel(flavor, native, signature))
        predictor.warm(read_example(folder))
        log.info(
            "deployment %s: loaded %s@%d (%s path, batching %s, warm-up %.0f ms)",
            d.name,
            d.model,
            number,
            "array" if predictor.fast else predictor.kind,
            "helps" if predictor.batching_helps else "does not help",
            predictor.warm_ms,
        )
        return Version(d, number, mv.flavor, predictor, self.loop, self.meter)

    def _remove(self, deployment_id: int) -> None:
        hosted = self.hosted.pop(deployment_id, None)
        if hosted is None:
            return
        same = [h for h in self.by_name.get(hosted.deployment.name, []) if h is not hosted]
        if same:
            self.by_name[hosted.deployment.name] = same
        else:
            self.by_name.pop(hosted.deployment.name, None)
        for v in hosted.versions():
            v.batcher.close()
        hosted.served = None
        self.meter.forget(deployment_id)
        log.info("deployment %s: deleted, unloaded", hosted.deployment.name)

    # -- scale to zero -----------------------------------------------------------------------

    def scale_down(self) -> None:
        """Unload the idle deployments that may scale to zero."""
        now = time.monotonic()
        for hosted in self.hosted.values():
            cfg = hosted.deployment.config
            if (
                hosted.served is None
                or cfg.min_replicas != 0
                or now - hosted.last_request < cfg.scale_to_zero_after_s
                or hosted.lock.locked()
                or any(v.batcher.queued for v in hosted.versions())
            ):
                continue
            versions, hosted.served = hosted.versions(), None
            for v in versions:
                v.batcher.close()
            log.info("deployment %s: idle, scaled to zero", hosted.deployment.name)

    async def cold_start(self, hosted: Hosted) -> Served:
        """Load a deployment scaled to zero; concurrent requests wait for the same load."""
        if hosted.loading is None:
            hosted.loading = asyncio.ensure_future(self._cold(hosted))
        task = hosted.loading
        try:
            await asyncio.shield(task)
        finally:
            if task.done() and hosted.loading is task:
                hosted.loading = None
        if hosted.served is None:
            raise NotFound(f"deployment {hosted.deployment.name!r} is no longer served")
        return hosted.served

    async def _cold(self, hosted: Hosted) -> None:
        start = time.perf_counter()
        await self.apply(hosted.deployment, load=True)
        hosted.cold_start_ms = (time.perf_counter() - start) * 1000
        hosted.cold_starts += 1
        log.info(
            "deployment %s: cold start in %.0f ms", hosted.deployment.name, hosted.cold_start_ms
        )

    def close(self) -> None:
        for hosted in self.hosted.values():
            for v in hosted.versions():
                v.batcher.close()

    # -- what the heartbeat says ------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, h in self.hosted.items():
            versions = h.versions()
            out[str(i)] = {
                "name": h.deployment.name,
                "versions": [v.number for v in versions],
                "ready": h.served is not None or h.deployment.config.min_replicas == 0,
                "loaded": h.served is not None,
                "inflight": sum(v.live.inflight for v in versions),
                "requests": h.requests,
                "last_request_ms": h.last_request_ms,
                "cold_start_ms": h.cold_start_ms,
                "cold_starts": h.cold_starts,
                "error": h.error,
                "generation": h.deployment.generation,
            }
        return {"deployments": out, "time_ms": now_ms()}
