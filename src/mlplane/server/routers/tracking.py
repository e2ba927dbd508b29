"""``/api/v1`` tracking routes. Each route is one service call; semantics live in
:class:`mlplane.tracking.service.TrackingService`."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from mlplane._json import float_out
from mlplane.errors import InvalidInput
from mlplane.projects import DEFAULT_PROJECT
from mlplane.security import Principal
from mlplane.server.bodies import read_limited
from mlplane.server.deps import principal, services
from mlplane.server.permissions import requires
from mlplane.services import Services
from mlplane.tracking.entities import (
    ArtifactInfo,
    Experiment,
    ExperimentPage,
    MetricColumns,
    Run,
    RunInfo,
    RunInput,
    RunPage,
    ViewType,
)

router = APIRouter(prefix="/api/v1", tags=["tracking"])
Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]


def ok(content: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(content, default=_encode, option=orjson.OPT_PASSTHROUGH_DATACLASS),
        status_code=status,
        media_type="application/json",
    )


def _run(run: Run) -> dict[str, Any]:
    data = run.data
    return {
        "info": run.info,
        "data": {
            "params": data.params,
            "tags": data.tags,
            "metrics": {k: float_out(v) for k, v in data.metrics.items()},
        },
        "inputs": run.inputs,
    }


def _encode(obj: Any) -> Any:
    # orjson would write non-finite metric values as null: runs are encoded by hand.
    if isinstance(obj, Run):
        return _run(obj)
    if isinstance(obj, RunPage):
        return {"runs": [_run(r) for r in obj.runs], "next_page_token": obj.next_page_token}
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise TypeError(type(obj).__name__)


class CreateExperiment(BaseModel):
    name: str = Field(min_length=1, max_length=500)
    project: str = DEFAULT_PROJECT
    artifact_location: str | None = None
    tags: dict[str, str] = {}
    description: str = ""


class ExperimentId(BaseModel):
    experiment_id: str


class UpdateExperiment(BaseModel):
    name: str | None = None
    description: str | None = None


class TagValue(BaseModel):
    value: str


class CreateRun(BaseModel):
    experiment_id: str
    run_name: str | None = None
    start_time: int | None = Field(default=None, ge=0)
    tags: dict[str, str] = {}
    parent_run_id: str | None = None
    heartbeat: bool = False


class UpdateRun(BaseModel):
    status: str | None = None
    end_time: int | None = Field(default=None, ge=0)
    run_name: str | None = None


class WireMetricColumns(BaseModel):
    key: list[str]
    value: list[float | str | None]
    timestamp: list[int]
    step: list[int]


class LogBatch(BaseModel):
    metrics: WireMetricColumns | None = None
    params: dict[str, str] = {}
    tags: dict[str, str] = {}


RAW_BODY_MODELS: tuple[type[BaseModel], ...] = (LogBatch,)
"""Bodies parsed by their routes themselves; the app adds them to the OpenAPI components."""


class Inputs(BaseModel):
    inputs: list[RunInput]


class SearchRuns(BaseModel):
    experiment_ids: list[str]
    filter: str | None = None
    view_type: ViewType = ViewType.ACTIVE_ONLY
    max_results: int = Field(default=1000, ge=1, le=50_000)
    order_by: list[str] = []
    page_token: str | None = None


class Heartbeat(BaseModel):
    run_ids: list[str] = Field(max_length=10_000)


class ArtifactList(BaseModel):
    files: list[ArtifactInfo]


# -- experiments -----------------------------------------------------------------------------


@router.post(
    "/experiments", response_model=ExperimentId, status_code=201, openapi_extra=requires("write")
)
def create_experiment(body: CreateExperiment, svc: Svc, who: Who) -> Response:
    eid = svc.tracking.create_experiment(
        who,
        body.name,
        project=body.project,
        artifact_location=body.artifact_location,
        tags=body.tags,
        description=body.description,
    )
    return ok({"experiment_id": eid}, 201)


@router.get("/experiments", response_model=ExperimentPage, openapi_extra=requires("read"))
def search_experiments(
    svc: Svc,
    who: Who,
    view_type: ViewType = ViewType.ACTIVE_ONLY,
    name_like: str | None = None,
    project: str | None = None,
    max_results: Annotated[int, Query(ge=1, le=50_000)] = 1000,
    page_token: str | None = None,
) -> Response:
    return ok(
        svc.tracking.search_experiments(
            who,
            view_type=view_type,
            name_like=name_like,
            project=project,
            max_results=max_results,
            page_token=page_token,
        )
    )


@router.get("/experiments/by-name", response_model=Experiment, openapi_extra=requires("read"))
def get_experiment_by_name(
    svc: Svc, who: Who, name: str, project: str = DEFAULT_PROJECT
) -> Response:
    return ok(svc.tracking.get_experiment_by_name(who, name, project=project))


@router.get(
    "/experiments/{experiment_id}", response_model=Experiment, openapi_extra=requires("read")
)
def get_experiment(experiment_id: str, svc: Svc, who: Who) -> Response:
    return ok(svc.tracking.get_experiment(who, experiment_id))


@router.patch("/experiments/{experiment_id}", status_code=204, openapi_extra=requires("write"))
def update_experiment(experiment_id: str, body: UpdateExperiment, svc: Svc, who: Who) -> Response:
    svc.tracking.update_experiment(who, experiment_id, name=body.name, description=body.description)
    return Response(status_code=204)


@router.put(
    "/experiments/{experiment_id}/tags/{key:path}", status_code=204, openapi_extra=requires("write")
)
def set_experiment_tag(
    experiment_id: str, key: str, body: TagValue, svc: Svc, who: Who
) -> Response:
    svc.tracking.set_experiment_tag(who, experiment_id, key, body.value)
    return Response(status_code=204)


@router.delete("/experiments/{experiment_id}", status_code=204, openapi_extra=requires("write"))
def delete_experiment(experiment_id: str, svc: Svc, who: Who) -> Response:
    svc.tracking.delete_experiment(who, experiment_id)
    return Response(status_code=204)


@router.post(
    "/experiments/{experiment_id}/restore", status_code=204, openapi_extra=requires("write")
)
def restore_experiment(experiment_id: str, svc: Svc, who: Who) -> Response:
    svc.tracking.restore_experiment(who, experiment_id)
    return Response(status_code=204)


# -- runs ------------------------------------------------------------------------------------


@router.post("/runs", response_model=Run, status_code=201, openapi_extra=requires("write"))
def create_run(body: CreateRun, svc: Svc, who: Who) -> Response:
    return ok(
        svc.tracking.create_run(
            who,
            body.experiment_id,
            run_name=body.run_name,
            start_time=body.start_time,
            tags=body.tags,
            parent_run_id=body.parent_run_id,
            heartbeat=body.heartbeat,
        ),
        201,
    )


@router.post("/runs/search", response_model=RunPage, openapi_extra=requires("read"))
def search_runs(body: SearchRuns, svc: Svc, who: Who) -> Response:
    return ok(
        svc.tracking.search_runs(
            who,
            body.experiment_ids,
            filter_string=body.filter,
            view_type=body.view_type,
            max_results=body.max_results,
            order_by=body.order_by,
            page_token=body.page_token,
        )
    )


@router.post("/runs/heartbeat", status_code=204, openapi_extra=requires("write"))
def heartbeat(body: Heartbeat, svc: Svc, who: Who) -> Response:
    svc.tracking.heartbeat(who, body.run_ids)
    return Response(status_code=204)


@router.get("/runs/{run_id}", response_model=Run, openapi_extra=requires("read"))
def get_run(run_id: str, svc: Svc, who: Who) -> Response:
    return ok(svc.tracking.get_run(who, run_id))


@router.patch("/runs/{run_id}", response_model=RunInfo, openapi_extra=requires("write"))
def update_run(run_id: str, body: UpdateRun, svc: Svc, who: Who) -> Response:
    return ok(
        svc.tracking.update_run(
            who, run_id, status=body.status, end_time=body.end_time, run_name=body.run_name
        )
    )


@router.delete("/runs/{run_id}", status_code=204, openapi_extra=requires("write"))
def delete_run(run_id: str, svc: Svc, who: Who, purge: bool = False) -> Response:
    if purge:
        svc.tracking.purge_run(who, run_id)
    else:
        svc.tracking.delete_run(who, run_id)
    return Response(status_code=204)


@router.post("/runs/{run_id}/restore", status_code=204, openapi_extra=requires("write"))
def restore_run(run_id: str, svc: Svc, who: Who) -> Response:
    svc.tracking.restore_run(who, run_id)
    return Response(status_code=204)


@router.post(
    "/runs/{run_id}/log-batch",
    status_code=204,
    openapi_extra={
        **requires("write"),
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LogBatch"}}},
        },
    },
)
async def log_batch(run_id: str, request: Request, svc: Svc, who: Who) -> Response:
    """Columnar metric points (``key``/``value``/``timestamp``/``step`` lists), params, tags.
    Non-finite values travel as the strings ``NaN``, ``Infinity``, ``-Infinity``."""
    raw = await read_limited(request, svc.settings.max_request_bytes)
    try:
        body = LogBatch.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise InvalidInput(f"invalid log-batch body at {loc}: {first['msg']}") from None
    metrics: MetricColumns | tuple[()] = ()
    if body.metrics is not None:
        m = body.metrics
        values = m.value
        if not all(type(v) is float for v in values):
            values = [_float(v) for v in values]
        metrics = MetricColumns(m.key, values, m.timestamp, m.step)  # type: ignore[arg-type]
    await run_in_threadpool(
        svc.tracking.log_batch, who, run_id, metrics=metrics, params=body.params, tags=body.tags
    )
    return Response(status_code=204)


def _float(v: float | str | None) -> float:
    if type(v) is float:
        return v
    if v is None:
        return float("nan")
    try:
        return float(v)
    except ValueError:
        raise InvalidInput(f"metric value {v!r} is not a number") from None


@router.delete("/runs/{run_id}/tags/{key:path}", status_code=204, openapi_extra=requires("write"))
def delete_tag(run_id: str, key: str, svc: Svc, who: Who) -> Response:
    svc.tracking.delete_tag(who, run_id, key)
    return Response(status_code=204)


@router.post("/runs/{run_id}/inputs", status_code=204, openapi_extra=requires("write"))
def log_inputs(run_id: str, body: Inputs, svc: Svc, who: Who) -> Response:
    svc.tracking.log_inputs(who, run_id, body.inputs)
    return Response(status_code=204)


@router.get("/runs/{run_id}/metrics", openapi_extra=requires("read"))
def metric_histories(
    run_id: str, svc: Svc, who: Who, key: Annotated[list[str] | None, Query()] = None
) -> Response:
    """Histories as columns per key: ``{key: {value: [], timestamp: [], step: []}}``."""
    hist = svc.tracking.get_metric_histories(who, run_id, key)
    out = {}
    for k, points in hist.items():
        out[k] = {
            "value": [float_out(p.value) for p in points],
            "timestamp": [p.timestamp for p in points],
            "step": [p.step for p in points],
        }
    return ok(out)


# -- artifacts -------------------------------------------------------------------------------


@router.put(
    "/runs/{run_id}/artifacts/{path:path}",
    response_model=ArtifactInfo,
    openapi_extra=requires("write"),
)
async def upload_artifact(run_id: str, path: str, request: Request, svc: Svc, who: Who) -> Response:
    """Stream a file into the run's artifacts (spooled to disk, never held in memory)."""
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="mlplane-up-", delete=True) as tmp:
        async for chunk in request.stream():
            tmp.write(chunk)
        tmp.flush()
        info = await run_in_threadpool(svc.tracking.log_artifact, who, run_id, path, tmp.name)
    return ok(info)


@router.get("/runs/{run_id}/artifacts", response_model=ArtifactList, openapi_extra=requires("read"))
def list_artifacts(
    run_id: str, svc: Svc, who: Who, path: str | None = None, recursive: bool = False
) -> Response:
    return ok({"files": svc.tracking.list_artifacts(who, run_id, path, recursive=recursive)})


@router.get("/runs/{run_id}/artifacts/{path:path}", openapi_extra=requires("read"))
async def download_artifact(run_id: str, path: str, svc: Svc, who: Who) -> StreamingResponse:
    info, fh = await run_in_threadpool(svc.tracking.open_artifact, who, run_id, path)

    def chunks():  # type: ignore[no-untyped-def]
        with fh:
            while chunk := fh.read(1024 * 1024):
                yield chunk

    body: AsyncIterator[bytes] = iterate_in_threadpool(chunks())
    headers = {"Content-Length": str(info.size)} if info.size is not None else {}
    return StreamingResponse(body, media_type="application/octet-stream", headers=headers)
