"""MLflow 3's logged models (``/api/2.0/mlflow/logged-models``) over the tracking service.

``mlflow.<flavor>.log_model`` creates a model (PENDING), uploads its files to
the model's ``artifact_location`` through the proxied artifact store, then
finalizes it READY; ``runs:/<run_id>/<name>`` finds it again by searching the
run's experiment for that name. Semantics live in
:class:`mlplane.tracking.logged_models.LoggedModelsMixin`.
"""

from __future__ import annotations

import mimetypes
import posixpath
import re
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from mlplane._json import float_out
from mlplane.security import Principal
from mlplane.server.deps import principal, services
from mlplane.server.mlflow_api._artifact_paths import logged_model_artifact_uri, safe_path
from mlplane.server.mlflow_api._tracking_convert import Ids
from mlplane.server.mlflow_api._wire import MlflowError, MlflowRoute, ok
from mlplane.server.permissions import requires
from mlplane.services import Services
from mlplane.tracking import logged_model_search as search
from mlplane.tracking.entities import LoggedModel, LoggedModelStatus

router = APIRouter(route_class=MlflowRoute, tags=["mlflow"])
Svc = Annotated[Services, Depends(services)]
Who = Annotated[Principal, Depends(principal)]

# MLflow's LoggedModelStatus enum: the client sends and reads the names.
_STATUS_OUT = {
    LoggedModelStatus.PENDING: "LOGGED_MODEL_PENDING",
    LoggedModelStatus.READY: "LOGGED_MODEL_READY",
    LoggedModelStatus.FAILED: "LOGGED_MODEL_UPLOAD_FAILED",
}
_STATUS_IN: dict[str | int, LoggedModelStatus] = {
    **{name: status for status, name in _STATUS_OUT.items()},
    **{str(s): s for s in LoggedModelStatus},
    1: LoggedModelStatus.PENDING,
    2: LoggedModelStatus.READY,
    3: LoggedModelStatus.FAILED,
}


class KeyValue(BaseModel):
    key: str
    value: str = ""


class CreateModel(BaseModel):
    experiment_id: str
    name: str | None = None
    model_type: str | None = None
    source_run_id: str | None = None
    params: list[KeyValue] = []
    tags: list[KeyValue] = []


class FinalizeModel(BaseModel):
    status: str | int


class Tags(BaseModel):
    tags: list[KeyValue] = []


class Params(BaseModel):
    params: list[KeyValue] = []


class DatasetRef(BaseModel):
    dataset_name: str
    dataset_digest: str | None = None


class OrderBy(BaseModel):
    field_name: str
    ascending: bool = True
    dataset_name: str | None = None
    dataset_digest: str | None = None


class SearchModels(BaseModel):
    experiment_ids: list[str]
    filter: str | None = None
    datasets: list[DatasetRef] = []
    max_results: int | None = None
    order_by: list[OrderBy] = []
    page_token: str | None = None


def model_json(m: LoggedModel, ids: Ids) -> dict[str, Any]:
    """A model as MLflow's ``LoggedModel`` message (``info`` and ``data``).

    The experiment id is MLflow's ("0" for the default experiment); the artifact URI
    keeps ours, like a run's, since it is a path in the artifact tree."""
    info: dict[str, Any] = {
        "model_id": m.model_id,
        "experiment_id": ids.outward(m.experiment_id),
        "name": m.name,
        "creation_timestamp_ms": m.creation_time,
        "last_updated_timestamp_ms": m.last_update_time,
        "artifact_uri": logged_model_artifact_uri(m.experiment_id, m.model_id),
        "status": _STATUS_OUT[LoggedModelStatus(m.status)],
        "tags": [{"key": k, "value": v} for k, v in m.tags.items()],
    }
    if m.model_type:
        info["model_type"] = m.model_type
    if m.source_run_id:
        info["source_run_id"] = m.source_run_id
    if m.status_message:
        info["status_message"] = m.status_message
    metrics = []
    for x in m.metrics:
        point: dict[str, Any] = {
            "key": x.key,
            "value": float_out(x.value),
            "timestamp": x.timestamp,
            "step": x.step,
            "model_id": m.model_id,
        }
        if x.run_id:
            point["run_id"] = x.run_id
        if x.dataset_name:
            point["dataset_name"] = x.dataset_name
            point["dataset_digest"] = x.dataset_digest
        metrics.append(point)
    data = {"params": [{"key": k, "value": v} for k, v in m.params.items()], "metrics": metrics}
    return {"info": info, "data": data}


def _pairs(items: list[KeyValue]) -> dict[str, str]:
    return {kv.key: kv.value for kv in items}


def _inward_filter(text: str | None, ids: Ids) -> str | None:
    """MLflow's default experiment "0" named in a filter is ours under its own id."""
    if not text or ids.default is None:  # no "Default" yet: "0" matches nothing, as it should
        return text
    return re.sub(
        r"(experiment_id\s*(?:=|!=)\s*)(['\"])0\2",
        lambda m: f"{m.group(1)}{m.group(2)}{ids.default}{m.group(2)}",
        text,
    )


@router.post("/logged-models", openapi_extra=requires("write"))
async def create_logged_model(body: CreateModel, request: Request, svc: Svc, who: Who) -> Response:
    ids = await Ids.of(request, who)
    model = await run_in_threadpool(
        partial(
            svc.tracking.create_logged_model,
            who,
            ids.inward(body.experiment_id),
            name=body.name,
            model_type=body.model_type,
            source_run_id=body.source_run_id,
            tags=_pairs(body.tags),
            params=_pairs(body.params),
        )
    )
    return ok({"model": model_json(model, ids)})


@router.post("/logged-models/search", openapi_extra=requires("read"))
async def search_logged_models(
    body: SearchModels, request: Request, svc: Svc, who: Who
) -> Response:
    ids = await Ids.of(request, who)
    order = [
        search.Order(
            o.field_name,
            o.ascending,
            search.Dataset(o.dataset_name, o.dataset_digest) if o.dataset_name else None,
        )
        for o in body.order_by
    ]
    page = await run_in_threadpool(
        partial(
            svc.tracking.search_logged_models,
            who,
            [ids.inward(e) for e in body.experiment_ids],
            filter_string=_inward_filter(body.filter, ids),
            datasets=[search.Dataset(d.dataset_name, d.dataset_digest) for d in body.datasets],
            order_by=order,
            max_results=body.max_results or 100,
            page_token=body.page_token,
        )
    )
    out: dict[str, Any] = {"models": [model_json(m, ids) for m in page.models]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return ok(out)


@router.get("/logged-models/{model_id}", openapi_extra=requires("read"))
async def get_logged_model(
    model_id: str, request: Request, svc: Svc, who: Who, allow_deleted: bool = False
) -> Response:
    ids = await Ids.of(request, who)
    model = await run_in_threadpool(
        partial(svc.tracking.get_logged_model, who, model_id, allow_deleted=allow_deleted)
    )
    return ok({"model": model_json(model, ids)})


@router.patch("/logged-models/{model_id}", openapi_extra=requires("write"))
async def finalize_logged_model(
    model_id: str, body: FinalizeModel, request: Request, svc: Svc, who: Who
) -> Response:
    key = body.status.upper() if isinstance(body.status, str) else body.status
    status = _STATUS_IN.get(key)
    if status is None or status == LoggedModelStatus.PENDING:
        raise MlflowError(
            f"status {body.status!r} is not a final status: send LOGGED_MODEL_READY or "
            "LOGGED_MODEL_UPLOAD_FAILED"
        )
    ids = await Ids.of(request, who)
    model = await run_in_threadpool(svc.tracking.finalize_logged_model, who, model_id, status)
    return ok({"model": model_json(model, ids)})


@router.delete("/logged-models/{model_id}", openapi_extra=requires("write"))
def delete_logged_model(model_id: str, svc: Svc, who: Who) -> Response:
    svc.tracking.delete_logged_model(who, model_id)
    return ok()


@router.patch("/logged-models/{model_id}/tags", openapi_extra=requires("write"))
def set_logged_model_tags(model_id: str, body: Tags, svc: Svc, who: Who) -> Response:
    svc.tracking.set_logged_model_tags(who, model_id, _pairs(body.tags))
    return ok()


@router.delete("/logged-models/{model_id}/tags/{tag_key:path}", openapi_extra=requires("write"))
def delete_logged_model_tag(model_id: str, tag_key: str, svc: Svc, who: Who) -> Response:
    svc.tracking.delete_logged_model_tag(who, model_id, tag_key)
    return ok()


@router.post("/logged-models/{model_id}/params", openapi_extra=requires("write"))
def log_logged_model_params(model_id: str, body: Params, svc: Svc, who: Who) -> Response:
    svc.tracking.log_logged_model_params(who, model_id, _pairs(body.params))
    return ok()


@router.get("/logged-models/{model_id}/artifacts/directories", openapi_extra=requires("read"))
def list_logged_model_artifacts(
    model_id: str, svc: Svc, who: Who, artifact_directory_path: str | None = None
) -> Response:
    folder = safe_path(artifact_directory_path)
    model = svc.tracking.get_logged_model(who, model_id)
    infos = svc.tracking.list_model_artifacts(who, model_id, folder or None)
    files = [
        {"path": i.path, "is_dir": True}
        if i.is_dir
        else {"path": i.path, "is_dir": False, "file_size": i.size}
        for i in sorted(infos, key=lambda i: i.path)
    ]
    root = logged_model_artifact_uri(model.experiment_id, model.model_id)
    return ok({"root_uri": root, "files": files})


@router.get("/logged-models/{model_id}/artifacts/files", openapi_extra=requires("read"))
async def get_logged_model_artifact(
    model_id: str, svc: Svc, who: Who, artifact_file_path: str | None = None
) -> StreamingResponse:
    path = safe_path(artifact_file_path)
    if not path:
        raise MlflowError(
            'the request needs the "artifact_file_path" query parameter', "BAD_REQUEST"
        )
    info, fh = await run_in_threadpool(svc.tracking.open_model_artifact, who, model_id, path)

    def chunks() -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(1024 * 1024):
                yield chunk

    body: AsyncIterator[bytes] = iterate_in_threadpool(chunks())
    headers = {"Content-Length": str(info.size)} if info.size is not None else {}
    media = mimetypes.guess_type(posixpath.basename(path))[0] or "application/octet-stream"
    return StreamingResponse(body, media_type=media, headers=headers)
