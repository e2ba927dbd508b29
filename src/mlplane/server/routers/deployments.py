"""``/api/v1/deployments`` routes: each is one call of
:class:`mlplane.serving.service.DeploymentService`, which holds the semantics.

These manage deployments; predictions are answered by ``mlplane serve`` (the inference
server), which reads the same store.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field

from mlplane.projects import DEFAULT_PROJECT
from mlplane.security import Principal
from mlplane.server.deps import principal, services
from mlplane.server.permissions import requires
from mlplane.server.routers.tracking import ok
from mlplane.services import Services

router = APIRouter(prefix="/api/v1", tags=["deployments"])
Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]


class CreateBody(BaseModel):
    name: str
    model: str
    config: dict[str, Any] | None = None


class CanaryBody(BaseModel):
    model: str
    steps: list[float] = Field(default_factory=lambda: [10.0, 25.0, 50.0, 100.0])
    interval: str | float = "60s"
    thresholds: dict[str, Any] | None = None
    failure_limit: int = 2
    promote: bool = True


class ShadowBody(BaseModel):
    model: str | None = None
    percent: float


class AbBody(BaseModel):
    variants: list[tuple[str, float]]
    sticky_header: str | None = None


class RouteBody(BaseModel):
    model: str


class FeedbackBody(BaseModel):
    request_id: str
    label: Any
    version: int | None = None


@router.post("/deployments", status_code=201, openapi_extra=requires("write"))
def create(body: CreateBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    d = svc.deployments.create(who, body.name, body.model, config=body.config, project=project)
    return ok(d, status=201)


@router.get("/deployments", openapi_extra=requires("read"))
def list_deployments(svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok({"deployments": svc.deployments.list_deployments(who, project=project)})


@router.get("/deployments/{name}", openapi_extra=requires("read"))
def get(name: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok(svc.deployments.get(who, name, project=project))


@router.patch("/deployments/{name}/config", openapi_extra=requires("write"))
def configure(
    name: str, body: dict[str, Any], svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    return ok(svc.deployments.configure(who, name, body, project=project))


@router.delete("/deployments/{name}", status_code=204, openapi_extra=requires("write"))
def delete(name: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    svc.deployments.delete(who, name, project=project)
    return Response(status_code=204)


@router.get("/deployments/{name}/history", openapi_extra=requires("read"))
def history(name: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok({"events": svc.deployments.history(who, name, project=project)})


@router.get("/deployments/{name}/status", openapi_extra=requires("read"))
def status(
    name: str, svc: Svc, who: Who, window_s: float = 300.0, project: str = DEFAULT_PROJECT
) -> Response:
    return ok(svc.deployments.status(who, name, window_s=window_s, project=project))


@router.get("/deployments/{name}/timeline", openapi_extra=requires("read"))
def timeline(
    name: str,
    svc: Svc,
    who: Who,
    since_s: float = 3600.0,
    bucket_s: float = 60.0,
    project: str = DEFAULT_PROJECT,
) -> Response:
    points = svc.deployments.timeline(
        who, name, since_s=since_s, bucket_s=bucket_s, project=project
    )
    return ok({"points": points})


@router.post("/deployments/{name}/canary", openapi_extra=requires("write"))
def canary(
    name: str, body: CanaryBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    d = svc.deployments.start_canary(
        who,
        name,
        body.model,
        steps=body.steps,
        interval=body.interval,
        thresholds=body.thresholds,
        failure_limit=body.failure_limit,
        promote=body.promote,
        project=project,
    )
    return ok(d)


@router.post("/deployments/{name}/promote", openapi_extra=requires("write"))
def promote(name: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok(svc.deployments.promote(who, name, project=project))


@router.put("/deployments/{name}/shadow", openapi_extra=requires("write"))
def shadow(
    name: str, body: ShadowBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    return ok(svc.deployments.set_shadow(who, name, body.model, body.percent, project=project))


@router.put("/deployments/{name}/ab", openapi_extra=requires("write"))
def ab(name: str, body: AbBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    d = svc.deployments.start_ab(
        who, name, body.variants, sticky_header=body.sticky_header, project=project
    )
    return ok(d)


@router.put("/deployments/{name}/route", openapi_extra=requires("write"))
def route(
    name: str, body: RouteBody, svc: Svc, who: Who, project: str = DEFAULT_PROJECT
) -> Response:
    return ok(svc.deployments.set_split(who, name, body.model, project=project))


@router.post("/deployments/{name}/rollback", openapi_extra=requires("write"))
def rollback(name: str, svc: Svc, who: Who, project: str = DEFAULT_PROJECT) -> Response:
    return ok(svc.deployments.rollback(who, name, project=project))


@router.get("/deployments/{name}/ab-report", openapi_extra=requires("read"))
def ab_report(
    name: str,
    svc: Svc,
    who: Who,
    since_s: float | None = None,
    alpha: float = 0.05,
    project: str = DEFAULT_PROJECT,
) -> Response:
    return ok(svc.deployments.ab_report(who, name, since_s=since_s, alpha=alpha, project=project))


@router.post("/deployments/{name}/feedback", status_code=204, openapi_extra=requires("predict"))
def feedback(
    name: str,
    body: FeedbackBody | list[FeedbackBody],
    svc: Svc,
    who: Who,
    project: str = DEFAULT_PROJECT,
) -> Response:
    """Ground truth for answered requests (one or a list), by the request id the answer
    carried; see :meth:`DeploymentService.record_feedback`."""
    for item in body if isinstance(body, list) else [body]:
        svc.deployments.record_feedback(
            who, name, item.request_id, item.label, version=item.version, project=project
        )
    return Response(status_code=204)
