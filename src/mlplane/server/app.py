"""The FastAPI application, built by :func:`create_app` from one settings object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mlplane._version import __version__
from mlplane.config import Settings, load_settings
from mlplane.db.migrate import HEAD_REVISION, current_revision
from mlplane.security.secrets_scan import install_log_filter
from mlplane.server import errors, headers, mlflow_api
from mlplane.server.auth import AuthMiddleware
from mlplane.server.observability import Metrics, MetricsMiddleware
from mlplane.server.permissions import requires
from mlplane.server.ratelimit import RateLimitMiddleware
from mlplane.server.routers import datasets, deployments, models, tracking
from mlplane.services import Services

log = logging.getLogger("mlplane.server")


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the server. Nothing happens at import time; all state hangs off ``app.state``."""
    settings = settings or load_settings()
    svc = services or Services.from_settings(settings)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(_reap_forever(svc))
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            if services is None:
                svc.close()

    app = FastAPI(
        title="mlplane",
        version=__version__,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.services = svc
    app.state.settings = settings
    errors.install(app)
    install_log_filter()  # no credential that reaches a log message is written out
    # Inside authentication: it keys on the (valid) token.
    app.add_middleware(
        RateLimitMiddleware,
        per_s=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
        by_token=settings.auth == "token",
    )
    # Added before metrics, so it runs inside the metrics middleware: refusals are counted too.
    app.add_middleware(AuthMiddleware, mode=settings.auth, identities=svc.identities)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(tracking.router)
    app.include_router(datasets.router)
    app.include_router(models.router)
    app.include_router(deployments.router)
    mlflow_api.install(app)
    from mlplane.ui import install as install_ui

    install_ui(app)

    @app.get("/healthz", tags=["health"], openapi_extra=requires("open"))
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], openapi_extra=requires("open"))
    def readyz() -> JSONResponse:
        """The database answers and its schema is current."""
        try:
            rev = current_revision(svc.db)
        except Exception:
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        if rev != HEAD_REVISION:
            return JSONResponse({"status": "unavailable", "schema": rev}, status_code=503)
        return JSONResponse({"status": "ready", "schema": rev, "version": __version__})

    app.add_route("/metrics", metrics.render, include_in_schema=False)
    _document_raw_bodies(app)
    headers.install(app, settings)
    return app


def _document_raw_bodies(app: FastAPI) -> None:
    """Routes that parse their own body (for speed) still get their schema in OpenAPI."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for model in tracking.RAW_BODY_MODELS:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _reap_forever(svc: Services) -> None:
    timeout = svc.settings.heartbeat_timeout_s
    every = max(0.5, min(30.0, timeout / 4))
    while True:
        await asyncio.sleep(every)
        try:
            n = await run_in_threadpool(svc.tracking.reap_stale_runs, timeout)
            if n:
                log.info("marked %d runs FAILED after their heartbeats stopped", n)
        except Exception as exc:  # keep reaping after a transient database error
            log.warning("reaper: %s", exc)


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (each worker builds its own app)."""
    return create_app(load_settings())
