"""The overview: what each section holds in the chosen project, and the latest runs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from mlplane.server.permissions import requires
from mlplane.ui import render

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/", openapi_extra=requires("authenticated"))
async def overview(request: Request, project: str | None = None) -> HTMLResponse:
    return await run_in_threadpool(_overview, request, project)


def _overview(request: Request, project: str | None) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    projects, current = render.projects(request, project)
    counts: dict[str, int] = {}
    recent = []
    if current is not None:
        exps = svc.tracking.search_experiments(me, project=current, max_results=1000).experiments
        counts["experiments"] = len(exps)
        counts["datasets"] = len(svc.data.list_datasets(me, project=current))
        counts["models"] = len(svc.registry.list_models(me, project=current))
        counts["deployments"] = len(svc.deployments.list_deployments(me, project=current))
        if exps:
            names = {e.experiment_id: e.name for e in exps}
            page = svc.tracking.search_runs(
                me, list(names), max_results=10, order_by=["start_time DESC"]
            )
            recent = [(r, names.get(r.info.experiment_id, "")) for r in page.runs]
    return render.page(
        request,
        "home.html",
        projects=projects,
        project=current,
        counts=counts,
        recent=recent,
    )
