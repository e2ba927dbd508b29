"""MLflow's tracking API: runs, logging and search here; experiments in
:mod:`._tracking_experiments`, metric histories and artifact listing in :mod:`._tracking_history`.

Each route reads MLflow's request (query parameters for GET, a JSON body
otherwise; ``run_uuid`` is accepted wherever ``run_id`` is), makes one or two
calls to :class:`~mlplane.tracking.service.TrackingService` and writes MLflow's
response, so a run logged here is the same run ``/api/v1`` serves. Bodies are
parsed with orjson and service calls run in the thread pool: these are the routes
a training loop hits once per metric.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from mlplane.security import Principal
from mlplane.server.deps import principal, services
from mlplane.server.mlflow_api import _tracking_convert as conv
from mlplane.server.mlflow_api import _tracking_experiments, _tracking_history
from mlplane.server.mlflow_api._wire import MlflowError, MlflowRoute, ok
from mlplane.server.permissions import requires
from mlplane.services import Services
from mlplane.tracking import validation as check
from mlplane.tracking.entities import MetricColumns, ModelMetric, RunStatus

MLFLOW_VERSION = "3.17.2"
"""The MLflow server version this API answers as: the newest release it is tested with."""

router = APIRouter(route_class=MlflowRoute, tags=["mlflow"])
router.include_router(_tracking_experiments.router)
router.include_router(_tracking_history.router)
root_router = APIRouter(tags=["mlflow"])

# MLflow's limits on one log-batch request (mlflow/utils/validation.py).
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000

_STATUS_NUMBERS = {"1": "RUNNING", "2": "SCHEDULED", "3": "FINISHED", "4": "FAILED", "5": "KILLED"}


async def _body(request: Request) -> tuple[Services, Principal, conv.Body]:
    svc = services(request)
    body = await conv.read_json(request, svc.settings.max_request_bytes)
    return svc, principal(request), body


def _status(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = str(value).upper()
    text = _STATUS_NUMBERS.get(text, text)
    if text not in RunStatus.__members__:
        raise MlflowError(f"Invalid value {value!r} for parameter 'status'")
    return text


# -- health ----------------------------------------------------------------------------------


@root_router.get("/health", response_class=PlainTextResponse, openapi_extra=requires("open"))
def health() -> str:
    """MLflow's liveness probe."""
    return "OK"


@root_router.get("/version", response_class=PlainTextResponse, openapi_extra=requires("open"))
def version() -> str:
    """The MLflow version clients check features against."""
    return MLFLOW_VERSION


@root_router.get("/api/3.0/mlflow/server-info", openapi_extra=requires("authenticated"))
@root_router.get("/ajax-api/3.0/mlflow/server-info", openapi_extra=requires("authenticated"))
def server_info() -> Response:
    """What MLflow 3 clients ask before an artifact transfer: multipart uploads through the
    proxied artifact routes are offered; presigned multipart downloads are not."""
    return ok(
        {
            "store_type": "SqlStore",
            "workspaces_enabled": False,
            "trace_archival_enabled": False,
            "multipart_uploads_enabled": True,
            "multipart_downloads_enabled": False,
            "presigned_upload_run_id_supported": False,
            "presigned_upload_model_id_supported": False,
            "features_enabled": {"gateway": False},
        }
    )


# -- runs ------------------------------------------------------------------------------------


@router.post("/runs/create", openapi_extra=requires("write"))
async def create_run(request: Request) -> Response:
    svc, who, body = await _body(request)
    ids = await conv.Ids.of(request, who)
    eid = ids.inward(body.get("experiment_id") or conv.DEFAULT_EXPERIMENT_ID)
    tags = dict(conv.key_values(body, "tags"))
    run_name = conv.string(body, "run_name") or tags.get(conv.TAG_RUN_NAME) or None
    if run_name:
        tags[conv.TAG_RUN_NAME] = run_name
    run = await run_in_threadpool(
        svc.tracking.create_run,
        who,
        eid,
        run_name=run_name,
        start_time=conv.integer(body, "start_time"),
        tags=tags,
        parent_run_id=tags.get(conv.TAG_PARENT_RUN) or None,
    )
    return ok({"run": conv.run_out(run, ids)})


@router.get("/runs/get", openapi_extra=requires("read"))
async def get_run(request: Request) -> Response:
    who = principal(request)
    rid = conv.run_id(conv.query(request))
    run = await run_in_threadpool(services(request).tracking.get_run, who, rid)
    return ok({"run": conv.run_out(run, await conv.Ids.of(request, who))})


@router.post("/runs/update", openapi_extra=requires("write"))
async def update_run(request: Request) -> Response:
    svc, who, body = await _body(request)
    rid = conv.run_id(body)
    run_name = conv.string(body, "run_name") or None
    info = await run_in_threadpool(
        svc.tracking.update_run,
        who,
        rid,
        status=_status(body.get("status")),
        end_time=conv.integer(body, "end_time"),
        run_name=run_name,
    )
    if run_name is not None:  # searchable as tags.mlflow.runName, as in MLflow
        await run_in_threadpool(
            svc.tracking.log_batch, who, rid, tags={conv.TAG_RUN_NAME: run_name}
        )
    return ok({"run_info": conv.run_info_out(info, await conv.Ids.of(request, who))})


@router.post("/runs/delete", openapi_extra=requires("write"))
async def delete_run(request: Request) -> Response:
    svc, who, body = await _body(request)
    await run_in_threadpool(svc.tracking.delete_run, who, conv.run_id(body))
    return ok()


@router.post("/runs/restore", openapi_extra=requires("write"))
async def restore_run(request: Request) -> Response:
    svc, who, body = await _body(request)
    await run_in_threadpool(svc.tracking.restore_run, who, conv.run_id(body))
    return ok()


# -- logging ---------------------------------------------------------------------------------


@router.post("/runs/log-metric", openapi_extra=requires("write"))
async def log_metric(request: Request) -> Response:
    svc, who, body = await _body(request)
    rid = conv.run_id(body)
    key = conv.required_string(body, "key")
    if body.get("value") is None:
        raise MlflowError("Missing value for required parameter 'value'.")
    value = conv.number(body["value"])
    timestamp = conv.required_integer(body, "timestamp")
    step = conv.integer(body, "step") or 0
    metrics = MetricColumns([key], [value], [timestamp], [step])
    if body.get("model_id"):
        await _log_model_metrics(svc, who, rid, [body])
    await run_in_threadpool(svc.tracking.log_batch, who, rid, metrics=metrics)
    return ok()


async def _log_model_metrics(svc: Services, who: Principal, rid: str, items: list[Any]) -> None:
    """MLflow 3 links a metric to a logged model through its ``model_id``: the points are
    also recorded on the model (before the run's copy, so an unknown model writes nothing)."""
    by_model: dict[str, list[ModelMetric]] = {}
    for m in items:
        by_model.setdefault(m["model_id"], []).append(
            ModelMetric(
                key=m["key"],
                value=conv.number(m["value"]),
                timestamp=conv.integer(m, "timestamp") or 0,
                step=conv.integer(m, "step") or 0,
                run_id=rid,
                dataset_name=m.get("dataset_name") or "",
                dataset_digest=m.get("dataset_digest") or "",
            )
        )
    for model_id, points in by_model.items():
        await run_in_threadpool(svc.tracking.log_logged_model_metrics, who, model_id, points)


@router.post("/runs/log-parameter", openapi_extra=requires("write"))
async def log_param(request: Request) -> Response:
    svc, who, body = await _body(request)
    rid = conv.run_id(body)
    key = conv.required_string(body, "key")
    value = conv.string(body, "value") or ""
    await run_in_threadpool(svc.tracking.log_batch, who, rid, params={key: value})
    return ok()


@router.post("/runs/set-tag", openapi_extra=requires("write"))
async def set_tag(request: Request) -> Response:
    svc, who, body = await _body(request)
    rid = conv.run_id(body)
    key = conv.required_string(body, "key")
    value = conv.string(body, "value") or ""
    await run_in_threadpool(svc.tracking.log_batch, who, rid, tags={key: value})
    if key == conv.TAG_RUN_NAME and value:  # MLflow renames the run with this tag
        await run_in_threadpool(svc.tracking.update_run, who, rid, run_name=value)
    return ok()


@router.post("/runs/delete-tag", openapi_extra=requires("write"))
async def delete_tag(request: Request) -> Response:
    svc, who, body = await _body(request)
    key = conv.required_string(body, "key")
    await run_in_threadpool(svc.tracking.delete_tag, who, conv.run_id(body), key)
    return ok()


@router.post("/runs/log-batch", openapi_extra=requires("write"))
async def log_batch(request: Request) -> Response:
    svc, who, body = await _body(request)
    rid = conv.run_id(body)
    raw_metrics = body.get("metrics") or []
    if not isinstance(raw_metrics, list):
        raise MlflowError("Invalid value for parameter 'metrics': expected an array")
    params_list = conv.key_values(body, "params")
    tags_list = conv.key_values(body, "tags")
    _check_batch_limits(len(raw_metrics), len(params_list), len(tags_list))
    params: dict[str, str] = {}
    for k, v in params_list:
        if params.get(k, v) != v:
            raise MlflowError(
                f"Duplicate parameter keys have been submitted: [{k!r}]. Please ensure the "
                "request contains only one param value per param key."
            )
        params[k] = v
    metrics = _metric_columns(raw_metrics) if raw_metrics else ()
    linked = [m for m in raw_metrics if m.get("model_id")]
    if linked:
        await _log_model_metrics(svc, who, rid, linked)
    await run_in_threadpool(
        svc.tracking.log_batch, who, rid, metrics=metrics, params=params, tags=dict(tags_list)
    )
    return ok()


def _check_batch_limits(n_metrics: int, n_params: int, n_tags: int) -> None:
    for what, n, limit in (
        ("metrics", n_metrics, MAX_METRICS_PER_BATCH),
        ("params", n_params, MAX_PARAMS_TAGS_PER_BATCH),
        ("tags", n_tags, MAX_PARAMS_TAGS_PER_BATCH),
    ):
        if n > limit:
            raise MlflowError(
                f"A batch logging request can contain at most {limit} {what}. Got {n} {what}. "
                f"Please split up {what} across multiple requests and try again."
            )
    total = n_metrics + n_params + n_tags
    if total > MAX_ENTITIES_PER_BATCH:
        raise MlflowError(
            f"A batch logging request can contain at most {MAX_ENTITIES_PER_BATCH} metrics, "
            f"params, and tags in total. Got {total} total entities."
        )


def _metric_columns(items: list[Any]) -> MetricColumns:
    keys, values, stamps, steps = [], [], [], []
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            raise MlflowError(f"Invalid value for parameter 'metrics[{i}]': expected an object")
        for field in ("key", "value", "timestamp"):
            if m.get(field) is None:
                raise MlflowError(f"Missing value for required parameter 'metrics[{i}].{field}'.")
        keys.append(m["key"])
        values.append(conv.number(m["value"], f"metrics[{i}].value"))
        stamps.append(conv.required_integer(m, "timestamp"))
        steps.append(conv.integer(m, "step") or 0)
    return MetricColumns(keys, values, stamps, steps)


@router.post("/runs/log-model", openapi_extra=requires("write"))
async def log_model(request: Request) -> Response:
    """MLflow 2's model record: appended to the run's ``mlflow.log-model.history`` tag."""
    svc, who, body = await _body(request)
    rid = conv.run_id(body)
    model_json = conv.required_string(body, "model_json")
    try:
        model = orjson.loads(model_json)
    except orjson.JSONDecodeError:
        model = None
    if not isinstance(model, dict):
        raise MlflowError(f"Malformed model info. \n {model_json} \n is not a valid JSON.")
    missing = {"artifact_path", "flavors", "utc_time_created", "run_id"} - model.keys()
    if missing:
        raise MlflowError(f"Model json is missing mandatory fields: {sorted(missing)}")
    run = await run_in_threadpool(svc.tracking.get_run, who, rid)
    history = run.data.tags.get(conv.TAG_LOGGED_MODELS)
    models = orjson.loads(history) if history else []
    value = orjson.dumps([*models, model]).decode()
    await run_in_threadpool(svc.tracking.log_batch, who, rid, tags={conv.TAG_LOGGED_MODELS: value})
    return ok()


@router.post("/runs/log-inputs", openapi_extra=requires("write"))
async def log_inputs(request: Request) -> Response:
    svc, who, body = await _body(request)
    rid = conv.run_id(body)
    inputs = conv.dataset_inputs_in(body.get("datasets") or [])
    inputs += conv.model_refs_in(body.get("models") or [], "models", conv.KIND_MODEL_INPUT)
    if inputs:
        await run_in_threadpool(svc.tracking.log_inputs, who, rid, inputs)
    return ok()


@router.post("/runs/outputs", openapi_extra=requires("write"))
async def log_outputs(request: Request) -> Response:
    svc, who, body = await _body(request)
    rid = conv.run_id(body)
    if body.get("models") is None:
        raise MlflowError("Missing value for required parameter 'models'.")
    outputs = conv.model_refs_in(body["models"], "models", conv.KIND_MODEL_OUTPUT)
    if outputs:
        await run_in_threadpool(svc.tracking.log_inputs, who, rid, outputs)
    return ok()


# -- search ----------------------------------------------------------------------------------


@router.post("/runs/search", openapi_extra=requires("read"))
async def search_runs(request: Request) -> Response:
    svc, who, body = await _body(request)
    raw_ids = body.get("experiment_ids") or []
    if not isinstance(raw_ids, list):
        raise MlflowError("Invalid value for parameter 'experiment_ids': expected an array")
    order_by = body.get("order_by") or []
    if not isinstance(order_by, list) or not all(isinstance(o, str) for o in order_by):
        raise MlflowError("Invalid value for parameter 'order_by': expected an array of strings")
    max_results = conv.integer(body, "max_results")
    max_results = 1000 if max_results is None else max_results
    if not 0 < max_results <= check.MAX_RESULTS:
        raise MlflowError(
            f"Invalid value {max_results} for parameter 'max_results' supplied. "
            f"It must be between 1 and {check.MAX_RESULTS}."
        )
    ids = await conv.Ids.of(request, who)
    page = await run_in_threadpool(
        svc.tracking.search_runs,
        who,
        [ids.inward(e) for e in raw_ids],
        filter_string=conv.string(body, "filter"),
        view_type=conv.view_type(body.get("run_view_type")),
        max_results=max_results,
        order_by=order_by,
        page_token=conv.string(body, "page_token") or None,
    )
    out: conv.Body = {"runs": [conv.run_out(r, ids) for r in page.runs]}
    if page.next_page_token:
        out["next_page_token"] = page.next_page_token
    return ok(out)
