"""MLflow's experiment endpoints (``/mlflow/experiments/*``) over the tracking service.

Experiments live in projects here and MLflow has none: names are looked up and
created in the default project, and search spans every project the caller may read.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mlplane.errors import NotFound
from mlplane.server.deps import principal, services
from mlplane.server.mlflow_api import _tracking_convert as conv
from mlplane.server.mlflow_api._wire import MlflowError, MlflowRoute, ok
from mlplane.server.permissions import requires
from mlplane.tracking import validation as check

router = APIRouter(route_class=MlflowRoute, tags=["mlflow"])

_DEFAULT_MAX_RESULTS = 1000


@router.post("/experiments/create", openapi_extra=requires("write"))
async def create_experiment(request: Request) -> Response:
    svc, who = services(request), principal(request)
    body = await conv.read_json(request, svc.settings.max_request_bytes)
    name = conv.required_string(body, "name")
    location = conv.string(body, "artifact_location") or None
    tags = dict(conv.key_values(body, "tags"))
    ids = await conv.Ids.of(request, who)
    description = tags.get(conv.TAG_NOTE, "")
    eid = await run_in_threadpool(
        svc.tracking.create_experiment,
        who,
        name,
        artifact_location=location,
        tags=tags,
        description=description,
    )
    return ok({"experiment_id": ids.outward(eid)})


@router.get("/experiments/get", openapi_extra=requires("read"))
async def get_experiment(request: Request) -> Response:
    who = principal(request)
    body = conv.query(request)
    ids = await conv.Ids.of(request, who)
    eid = ids.inward(conv.required_string(body, "experiment_id"))
    exp = await run_in_threadpool(services(request).tracking.get_experiment, who, eid)
    return ok({"experiment": conv.experiment_out(exp, ids)})


@router.get("/experiments/get-by-name", openapi_extra=requires("read"))
async def get_experiment_by_name(request: Request) -> Response:
    who = principal(request)
    name = conv.required_string(conv.query(request), "experiment_name")
    ids = await conv.Ids.of(request, who)  # makes "Default" exist, as it always does in MLflow
    try:
        exp = await run_in_threadpool(services(request).tracking.get_experiment_by_name, who, name)
    except NotFound:
        raise MlflowError(
            f"Could not find experiment with name '{name}'", "RESOURCE_DOES_NOT_EXIST"
        ) from None
    return ok({"experiment": conv.experiment_out(exp, ids)})


@router.post("/experiments/search", openapi_extra=requires("read"))
async def search_experiments(request: Request) -> Response:
    svc = services(request)
    return await _search_experiments(
        request, await conv.read_json(request, svc.settings.max_request_bytes)
    )


@router.get("/experiments/search", openapi_extra=requires("read"))
async def search_experiments_get(request: Request) -> Response:
    return await _search_experiments(request, conv.query(request, repeated=("order_by",)))


async def _search_experiments(request: Request, body: conv.Body) -> Response:
    who = principal(request)
    max_results = conv.integer(body, "max_results") or _DEFAULT_MAX_RESULTS
    if max_results > check.MAX_RESULTS:
        raise MlflowError(
            f"Invalid value {max_results} for parameter 'max_results' supplied. "
            f"It must be at most {check.MAX_RESULTS}"
        )
    order_by = body.get("order_by") or None
    if order_by is not None and not isinstance(order_by, list):
        order_by = [order_by]
    ids = await conv.Ids.of(request, who)
    page = await run_in_threadpool(
        services(request).tracking.search_experiments,
        who,
        view_type=conv.view_type(body.get("view_type")),
        max_results=max_results,
        page_token=conv.string(body, "page_token") or None,
        filter_string=conv.string(body, "filter"),
        # MLflow's default order: newest first, ties by id.
        order_by=order_by or ["creation_time DESC", "experiment_id ASC"],
    )
    out: conv.Body = {"experiments": [conv.experiment_out(e, ids) for e in page.experiments]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return ok(out)


@router.post("/experiments/update", openapi_extra=requires("write"))
async def update_experiment(request: Request) -> Response:
    svc, who = services(request), principal(request)
    body = await conv.read_json(request, svc.settings.max_request_bytes)
    ids = await conv.Ids.of(request, who)
    eid = ids.inward(conv.required_string(body, "experiment_id"))
    new_name = conv.required_string(body, "new_name")
    await run_in_threadpool(svc.tracking.update_experiment, who, eid, name=new_name)
    return ok()


@router.post("/experiments/delete", openapi_extra=requires("write"))
async def delete_experiment(request: Request) -> Response:
    return await _set_stage(request, deleted=True)


@router.post("/experiments/restore", openapi_extra=requires("write"))
async def restore_experiment(request: Request) -> Response:
    return await _set_stage(request, deleted=False)


async def _set_stage(request: Request, *, deleted: bool) -> Response:
    svc, who = services(request), principal(request)
    body = await conv.read_json(request, svc.settings.max_request_bytes)
    ids = await conv.Ids.of(request, who)
    eid = ids.inward(conv.required_string(body, "experiment_id"))
    act = svc.tracking.delete_experiment if deleted else svc.tracking.restore_experiment
    await run_in_threadpool(act, who, eid)
    return ok()


@router.post("/experiments/set-experiment-tag", openapi_extra=requires("write"))
async def set_experiment_tag(request: Request) -> Response:
    svc, who = services(request), principal(request)
    body = await conv.read_json(request, svc.settings.max_request_bytes)
    ids = await conv.Ids.of(request, who)
    eid = ids.inward(conv.required_string(body, "experiment_id"))
    key = conv.required_string(body, "key")
    value = conv.string(body, "value") or ""
    await run_in_threadpool(svc.tracking.set_experiment_tag, who, eid, key, value)
    if key == conv.TAG_NOTE:  # MLflow's UI keeps the description in this tag
        await run_in_threadpool(svc.tracking.update_experiment, who, eid, description=value)
    return ok()


@router.post("/experiments/delete-experiment-tag", openapi_extra=requires("write"))
async def delete_experiment_tag(request: Request) -> Response:
    svc, who = services(request), principal(request)
    body = await conv.read_json(request, svc.settings.max_request_bytes)
    ids = await conv.Ids.of(request, who)
    eid = ids.inward(conv.required_string(body, "experiment_id"))
    key = conv.required_string(body, "key")
    await run_in_threadpool(svc.tracking.delete_experiment_tag, who, eid, key)
    if key == conv.TAG_NOTE:
        await run_in_threadpool(svc.tracking.update_experiment, who, eid, description="")
    return ok()
