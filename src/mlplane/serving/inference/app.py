"""The inference worker: one process's app, hosting the deployments of the database.

``mlplane serve`` runs one such app per worker process under uvicorn (see
:mod:`mlplane.serving.supervisor`). Routes:

======================================================  =======================================
``GET /v2/health/live``, ``/v2/health/ready``            open; ready once the start-up load ends
``GET /metrics``, ``/ping``, ``/health``                 open (Prometheus; MLflow's health)
``GET /v2``                                               server metadata (OIP)
``GET /v2/models/{name}[/versions/{v}]``                  model metadata, from the signature
``GET /v2/models/{name}[/versions/{v}]/ready``            is it loaded
``POST /v2/models/{name}[/versions/{v}]/infer``           OIP inference (JSON or binary tensors)
``POST /invocations``                                     MLflow's scoring body: the only
                                                          deployment, or ``X-Mlplane-Deployment``
``POST /api/v1/deployments/{name}/predict``               our JSON body; answer with id, version
``POST /api/v1/deployments/{name}/feedback``,             ``{"request_id", "label"}`` or a list
``POST /v2/models/{name}/feedback``
======================================================  =======================================

The predict paths are dispatched before Starlette's router and middleware (they are the
hot path; see :mod:`mlplane.serving.inference.predict`); the rest are ordinary Starlette
routes. A version is addressed directly only when the deployment routes to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import numpy as np
import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mlplane._version import __version__
from mlplane.errors import InvalidInput, MlplaneError, NotFound
from mlplane.security import Principal
from mlplane.serving.inference import protocols
from mlplane.serving.inference.auth import Authenticator, require_predict, require_read
from mlplane.serving.inference.hosting import Host, Hosted, Served, Version
from mlplane.serving.inference.metrics import Meter
from mlplane.serving.inference.predict import INVOCATIONS, OIP, PLAIN, Predict, Recent, read_body
from mlplane.serving.inference.reporter import Reporter
from mlplane.serving.inference.responses import error_parts
from mlplane.serving.inference.shadow import Mirror
from mlplane.serving.inference.watch import watch

MAX_FEEDBACK = 10_000
"""Feedback items per request at most."""


class InferenceApp(Starlette):
    """Starlette, with the predict paths taken before the router (see the module docs)."""

    predict: Predict

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path == "/invocations":
                await self.predict(scope, receive, send, INVOCATIONS, None, None)
                return
            if path.startswith("/v2/models/") and path.endswith("/infer"):
                parts = path[11:-6].split("/")
                if len(parts) == 1:
                    await self.predict(scope, receive, send, OIP, parts[0], None)
                    return
                if len(parts) == 3 and parts[1] == "versions":
                    await self.predict(scope, receive, send, OIP, parts[0], parts[2])
                    return
            elif path.startswith("/api/v1/deployments/") and path.endswith("/predict"):
                name = path[20:-8]
                if name and "/" not in name:
                    await self.predict(scope, receive, send, PLAIN, name, None)
                    return
        await super().__call__(scope, receive, send)


def create_inference_app(
    services: Any,
    *,
    worker_id: str,
    auth: str = "token",
    only: Sequence[str] | None = None,
    poll_s: float = 0.5,
    flush_s: float = 2.0,
    capture: Any = None,
) -> Starlette:
    """Build one inference worker's app over ``services``' deployments.

    Args:
        services: The :class:`~mlplane.services.Services` of this process.
        worker_id: This worker's id in heartbeats, windows and ``/metrics``.
        auth: ``token`` (an API token on every route but health and metrics) or ``none``
            (loopback callers only, as platform admins).
        only: Names (or ``project/name``) of the deployments to host; None hosts all.
        poll_s: How often the deployments' generations are compared (a change is live
            within about this long plus the time to load its versions).
        flush_s: How often traffic windows and a heartbeat are sent.
        capture: A sink with ``submit(deployment_id, CaptureRecord)`` for the sampled
            ``capture_percent`` of requests; None captures nothing.
    """
    meter = Meter(worker_id)
    host = Host(services, meter, only=set(only) if only is not None else None)
    authn = Authenticator(services.identities, auth)
    recent = Recent()
    handlers = Predict(host, authn, Mirror(), capture, recent)
    reporter = Reporter(services, meter, host, worker_id, flush_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        host.loop = asyncio.get_running_loop()
        tasks = [asyncio.ensure_future(watch(host, poll_s)), asyncio.ensure_future(reporter.run())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await reporter.close()
            host.close()

    async def caller(request: Request) -> Principal:
        return await authn.principal(
            request.scope, request.headers.get("authorization", "").encode() or None
        )

    def hosted_for(request: Request, name: str) -> Hosted:
        project = request.headers.get("x-mlplane-project")
        return host.find(name, project.encode() if project else None)

    async def served_for(hosted: Hosted) -> Served:
        return hosted.served or await host.cold_start(hosted)

    async def live(_: Request) -> Response:
        return _json({"live": True})

    async def ready(_: Request) -> Response:
        return _json({"ready": host.ready}, 200 if host.ready else 503)

    async def server_metadata(request: Request) -> Response:
        await caller(request)
        return _json(
            {"name": "mlplane", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def model_metadata(request: Request) -> Response:
        p = await caller(request)
        hosted = hosted_for(request, request.path_params["name"])
        require_read(p, hosted.deployment.project, hosted.deployment.name)
        served = await served_for(hosted)
        version = _pick(served, request.path_params.get("version"))
        return _json(_metadata(hosted, served, version))

    async def model_ready(request: Request) -> Response:
        p = await caller(request)
        hosted = hosted_for(request, request.path_params["name"])
        require_read(p, hosted.deployment.project, hosted.deployment.name)
        number = request.path_params.get("version")
        d = hosted.deployment
        if number is not None and (not number.isdigit() or int(number) not in d.routing.versions()):
            raise NotFound(f"deployment {d.name!r} does not route to version {number!r}")
        # Scaled to zero counts as ready: the next request loads it.
        ok = hosted.served is not None or (hosted.error is None and d.config.min_replicas == 0)
        body = {"name": d.name, "ready": ok, "loaded": hosted.served is not None}
        if number is not None:
            body["version"] = number
        return _json(body, 200 if ok else 503)

    async def feedback(request: Request) -> Response:
        p = await caller(request)
        hosted = hosted_for(request, request.path_params["name"])
        d = hosted.deployment
        require_predict(p, d.project, d.name)
        items = protocols.loads(await read_body(request.receive, dict(request.scope["headers"])))
        items = items if isinstance(items, list) else [items]
        if not items or len(items) > MAX_FEEDBACK:
            raise InvalidInput(f"send 1 to {MAX_FEEDBACK} feedback items")
        calls = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
                raise InvalidInput(f"feedback item {i} must be an object with request_id and label")
            seen = recent.get(str(item["request_id"]))
            version = item.get("version", seen[0] if seen else None)
            prediction: Any = protocols.jsonable(seen[1]) if seen else None
            if isinstance(prediction, np.ndarray):
                prediction = prediction.tolist()
            calls.append((str(item["request_id"]), item["label"], version, prediction))

        def record() -> None:
            for rid, label, version, prediction in calls:
                services.deployments.record_feedback(
                    p,
                    d.name,
                    rid,
                    label,
                    version=version,
                    prediction=prediction,
                    project=d.project,
                )

        await asyncio.to_thread(record)
        return _json({"recorded": len(calls)})

    async def metrics(_: Request) -> Response:
        folded = meter.fold()

        def render() -> bytes:
            meter.absorb(folded)
            return meter.render(lambda: _host_metrics(host, worker_id))

        return Response(await asyncio.to_thread(render), media_type=CONTENT_TYPE_LATEST)

    async def ping(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def hot(request: Request) -> Response:  # reached only for other methods
        return PlainTextResponse("Method Not Allowed", 405)

    routes = [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/metrics", metrics),
        Route("/ping", ping),
        Route("/health", ping),
        Route("/v2", server_metadata),
        Route("/v2/models/{name}", model_metadata),
        Route("/v2/models/{name}/versions/{version}", model_metadata),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/v2/models/{name}/feedback", feedback, methods=["POST"]),
        Route("/api/v1/deployments/{name}/feedback", feedback, methods=["POST"]),
        Route("/v2/models/{name}/infer", hot),
        Route("/v2/models/{name}/versions/{version}/infer", hot),
        Route("/invocations", hot),
        Route("/api/v1/deployments/{name}/predict", hot),
    ]
    app = InferenceApp(routes=routes, lifespan=lifespan)
    app.predict = handlers
    app.state.host = host
    app.state.meter = meter

    async def domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MlplaneError)
        status, body, headers = error_parts(exc, v2=request.url.path.startswith("/v2"))
        return Response(
            body,
            status,
            headers={k.decode(): v.decode() for k, v in headers if k != b"content-length"},
        )

    app.add_exception_handler(MlplaneError, domain_error)
    return app


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


def _pick(served: Served, number: str | None) -> Version:
    if number is None:
        return served.versions[served.deployment.routing.stable]
    v = served.versions.get(int(number)) if number.isdigit() else None
    if v is None:
        raise NotFound(
            f"deployment {served.deployment.name!r} does not route to version {number!r}"
        )
    return v


def _metadata(hosted: Hosted, served: Served, version: Version) -> dict[str, Any]:
    pred = version.predictor
    if pred.tensor is not None:
        inputs = [
            {
                "name": pred.tensor.name,
                "datatype": protocols.datatype(pred.tensor.type),
                "shape": list(pred.tensor.shape or (-1,)),
            }
        ]
    else:
        inputs = [
            {"name": c.name, "datatype": protocols.datatype(c.type), "shape": [-1]}
            for c in pred.specs
        ]
    sig = pred.model.signature
    specs = {c.name: c for c in (sig.outputs or [])} if sig is not None else {}
    outputs = []
    for name in version.outputs:
        spec = specs.get(name)
        shape = list(spec.shape) if spec is not None and spec.shape else [-1]
        dt = protocols.datatype(spec.type) if spec is not None else "BYTES"
        outputs.append({"name": name, "datatype": dt, "shape": shape})
    return {
        "name": hosted.deployment.name,
        "versions": [str(v) for v in served.deployment.routing.versions()],
        "platform": version.flavor,
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {
            "model": hosted.deployment.model,
            "version": version.label,
            "project": hosted.deployment.project,
        },
    }


def _host_metrics(host: Host, worker: str) -> Iterator[Metric]:
    cold = CounterMetricFamily(
        "mlplane_inference_cold_starts",
        "Loads after scaling to zero",
        labels=["worker", "deployment"],
    )
    cold_ms = GaugeMetricFamily(
        "mlplane_inference_cold_start_seconds",
        "The last cold start's load time",
        labels=["worker", "deployment"],
    )
    loaded = GaugeMetricFamily(
        "mlplane_inference_loaded",
        "Whether the deployment is loaded (0: scaled to zero)",
        labels=["worker", "deployment"],
    )
    for h in list(host.hosted.values()):
        labels = [worker, h.deployment.name]
        cold.add_metric(labels, h.cold_starts)
        if h.cold_start_ms is not None:
            cold_ms.add_metric(labels, h.cold_start_ms / 1000.0)
        loaded.add_metric(labels, 1.0 if h.served is not None else 0.0)
    yield from (cold, cold_ms, loaded)
