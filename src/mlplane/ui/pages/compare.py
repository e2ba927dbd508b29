"""Comparing runs: ``/ui/compare?runs=ID1,ID2,...`` (2 to 100 runs, across experiments),
and the metric curves it draws, as JSON from ``/ui/api/compare/metrics``.

The page itself carries no metric history: a hundred runs of a thousand steps over a few
keys is megabytes of JSON, so compare.js fetches each chart's curves when the chart comes
into view (downsampled per series to :data:`_compare_data.MAX_POINTS`).

Both routes declare ``authenticated``: without ``?runs=`` there is nothing to read and the
answer is a 400 for anyone signed in; with runs, the tracking service checks ``read`` on
each run's project and refuses with a 403.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from mlplane.errors import InvalidInput
from mlplane.server.permissions import requires
from mlplane.ui import render
from mlplane.ui.pages import _compare_data as data

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/compare", openapi_extra=requires("authenticated"))
async def compare(
    request: Request,
    runs: str | None = None,
    key: list[str] = Query(default=[]),  # a repeated ?key= (the picker's checkboxes)
    x: str | None = None,
    y: str | None = None,
    only: str | None = None,
) -> HTMLResponse:
    return await run_in_threadpool(_compare, request, runs, key, x, y, only == "diff")


@router.get("/api/compare/metrics", openapi_extra=requires("authenticated"))
async def compare_metrics(
    request: Request, runs: str | None = None, key: str | None = None
) -> Response:
    return await run_in_threadpool(_metrics, request, runs, key)


def _metrics(request: Request, runs: str | None, key: str | None) -> Response:
    svc, me = render.services(request), render.principal(request)
    loaded = data.load_runs(svc, me, data.parse_runs(runs))
    if not key:
        raise InvalidInput("name the metric to plot: ?key=<metric key>")
    spec = data.curves_spec(svc, me, loaded, data.labels(loaded), key)
    # orjson: a hundred curves of a thousand points are megabytes, ten times faster so.
    return Response(
        orjson.dumps(spec),
        media_type="application/json",
        headers={"Cache-Control": "private, no-store"},  # the caller's own, like the pages
    )


def _compare(
    request: Request,
    runs: str | None,
    keys: list[str],
    x: str | None,
    y: str | None,
    only_diff: bool,
) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    ids = data.parse_runs(runs)
    loaded = data.load_runs(svc, me, ids)
    names = data.labels(loaded)
    experiments = {
        eid: svc.tracking.get_experiment(me, eid).name
        for eid in dict.fromkeys(r.info.experiment_id for r in loaded)
    }
    common, every = data.metric_keys(loaded)
    unknown = [k for k in keys if k not in every]
    if unknown:
        raise InvalidInput(f"no run here logged {', '.join(unknown)}: pick metrics from the list")
    chosen = keys or common or every

    rows = data.diff_rows(loaded)
    differing = data.differing_params(rows)
    params, metrics = data.fields(loaded)
    x_field = data.pick(x, params + metrics, differing)
    y_field = data.pick(y, metrics, [f"metrics.{k}" for k in chosen])
    scatter = (
        data.scatter_spec(loaded, names, x_field, y_field)
        if x_field is not None and y_field is not None
        else None
    )
    parallel = data.parallel_data(loaded, names, differing, y_field)

    ctx: dict[str, Any] = {
        "runs": loaded,
        "names": names,
        "ids": ids,
        "experiments": experiments,
        "common": common,
        "every": every,
        "chosen": chosen,
        "picked": keys,
        "shown": chosen[: data.MAX_CHARTS],
        "more": chosen[data.MAX_CHARTS :],
        "max_points": data.MAX_POINTS,
        "params": params,
        "metrics": metrics,
        "x": x_field,
        "y": y_field,
        "scatter": scatter,
        "parallel": parallel,
        "rows": [r for r in rows if r.differs] if only_diff else rows,
        "row_count": len(rows),
        "diff_count": sum(r.differs for r in rows),
        "only_diff": only_diff,
        "toggle_url": _url(ids, keys, x, y, only_diff=not only_diff),
    }
    return render.page(request, "compare/compare.html", section="experiments", **ctx)


def _url(ids: list[str], keys: list[str], x: str | None, y: str | None, *, only_diff: bool) -> str:
    """This page with the same choices but ``only_diff`` (the diff table's toggle)."""
    q: dict[str, Any] = {"runs": ",".join(ids), "key": keys}
    if x:
        q["x"] = x
    if y:
        q["y"] = y
    if only_diff:
        q["only"] = "diff"
    return "/ui/compare?" + urlencode(q, doseq=True)
