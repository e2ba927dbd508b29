"""MLflow's read-heavy tracking endpoints: metric histories (the UI's charts) and a run's
artifact listing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mlplane.server.deps import principal, services
from mlplane.server.mlflow_api import _tracking_convert as conv
from mlplane.server.mlflow_api._wire import MlflowError, MlflowRoute, ok
from mlplane.server.permissions import requires

router = APIRouter(route_class=MlflowRoute, tags=["mlflow"])

# MLflow's limits on get-history-bulk-interval (mlflow/server/handlers.py).
MAX_HISTORY_RUNS = 100
MAX_HISTORY_RESULTS_PER_RUN = 2500
ARTIFACT_PAGE_SIZE = 1000


# -- metric history --------------------------------------------------------------------------


@router.get("/metrics/get-history", openapi_extra=requires("read"))
async def get_metric_history(request: Request) -> Response:
    who, body = principal(request), conv.query(request)
    rid = conv.run_id(body)
    key = conv.required_string(body, "metric_key")
    max_results = conv.integer(body, "max_results")
    if max_results is not None and max_results <= 0:
        raise MlflowError(
            f"Invalid value {max_results} for parameter 'max_results' supplied. "
            "It must be a positive integer."
        )
    offset = conv.page_token_offset(conv.string(body, "page_token"))
    points = await run_in_threadpool(services(request).tracking.get_metric_history, who, rid, key)
    end = len(points) if max_results is None else offset + max_results
    out: conv.Body = {"metrics": [conv.metric_out(m) for m in points[offset:end]]}
    if end < len(points):
        out["next_page_token"] = conv.page_token(end)
    return ok(out)


@router.get("/metrics/get-history-bulk-interval", openapi_extra=requires("read"))
async def get_metric_history_bulk_interval(request: Request) -> Response:
    """Each run's history of one metric, sampled evenly to at most ``max_results`` points
    (first and last kept), within ``[start_step, end_step]`` when given: the UI's charts."""
    who, body = principal(request), conv.query(request, repeated=("run_ids",))
    run_ids = body.get("run_ids") or []
    if not run_ids:
        raise MlflowError("Missing value for required parameter 'run_ids'.")
    if len(run_ids) > MAX_HISTORY_RUNS:
        raise MlflowError(
            f"GetMetricHistoryBulkInterval request must specify at most {MAX_HISTORY_RUNS} "
            f"run_ids. Received {len(run_ids)} run_ids."
        )
    key = conv.required_string(body, "metric_key")
    start, end = conv.integer(body, "start_step"), conv.integer(body, "end_step")
    if (start is None) != (end is None):
        raise MlflowError("If either start step or end step are specified, both must be specified.")
    if start is not None and end is not None and start > end:
        raise MlflowError(
            f"end_step must be greater than start_step. Found start_step={start} and "
            f"end_step={end}."
        )
    max_results = conv.integer(body, "max_results") or MAX_HISTORY_RESULTS_PER_RUN
    if not 1 <= max_results <= MAX_HISTORY_RESULTS_PER_RUN:
        raise MlflowError(f"max_results must be between 1 and {MAX_HISTORY_RESULTS_PER_RUN}.")
    tracking = services(request).tracking

    def sample() -> list[conv.Body]:
        out = []
        for rid in run_ids:
            points = tracking.get_metric_history(who, rid, key)
            if start is not None and end is not None:
                points = [m for m in points if start <= m.step <= end]
            for i in _evenly_spaced(len(points), max_results):
                out.append({**conv.metric_out(points[i]), "run_id": rid})
        return out

    return ok({"metrics": await run_in_threadpool(sample)})


def _evenly_spaced(total: int, limit: int) -> list[int]:
    """At most ``limit`` indices into ``total`` items, evenly spread, the first and last kept
    (MLflow's sampling; with ``limit`` 1, the last point only)."""
    if total <= limit:
        return list(range(total))
    if limit == 1:
        return [total - 1]
    step = (total - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})


# -- artifacts -------------------------------------------------------------------------------


@router.get("/artifacts/list", openapi_extra=requires("read"))
async def list_artifacts(request: Request) -> Response:
    who, body = principal(request), conv.query(request)
    rid = conv.run_id(body)
    path = conv.string(body, "path") or None
    offset = conv.page_token_offset(conv.string(body, "page_token"))
    tracking = services(request).tracking

    def listing() -> tuple[str, list[Any]]:
        run = tracking.get_run(who, rid)
        return run.info.artifact_uri, tracking.list_artifacts(who, rid, path)

    root, files = await run_in_threadpool(listing)
    page = files[offset : offset + ARTIFACT_PAGE_SIZE]
    out: conv.Body = {
        "root_uri": conv.artifact_uri_out(root),
        "files": [
            {"path": f.path, "is_dir": True}
            if f.is_dir
            else {"path": f.path, "is_dir": False, "file_size": f.size or 0}
            for f in page
        ],
    }
    if offset + ARTIFACT_PAGE_SIZE < len(files):
        out["next_page_token"] = conv.page_token(offset + ARTIFACT_PAGE_SIZE)
    return ok(out)
