"""The deployments pages: the list with each split and last hour's traffic, and one
deployment with its variants, rollout progress, live charts, A/B report, workers and
history; rollback and canary promotion for those who may write.

Every figure comes from :class:`~mlplane.serving.service.DeploymentService` (``status``,
``timeline``, ``ab_report``, ``history``), as ``mlplane deploy status|history|ab-report``
shows them; the charts refresh from ``/ui/api/deployments/{name}/timeline``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mlplane.projects import DEFAULT_PROJECT
from mlplane.security import Principal
from mlplane.server.permissions import requires
from mlplane.services import Services
from mlplane.ui import render, session
from mlplane.ui.app import form
from mlplane.ui.pages import _deployments_view as view

router = APIRouter(prefix="/ui", include_in_schema=False)
LIST_WINDOW_S = 3600.0


def _one_hour(svc: Services, me: Principal, name: str, project: str) -> dict[str, Any]:
    """Live requests and error rate of the last hour, all versions together."""
    st = svc.deployments.status(me, name, window_s=LIST_WINDOW_S, project=project)
    live = [t for t in st.traffic if t.kind == "live"]
    requests = sum(t.requests for t in live)
    failed = sum(t.errors for t in live)
    return {"requests": requests, "error_rate": failed / requests if requests else None}


@router.get("/deployments", openapi_extra=requires("authenticated"))
def deployments(request: Request, project: str | None = None) -> HTMLResponse:
    # "authenticated", like the overview: the list shows a project the caller reads (the
    # picker's choice, else their first); the service checks the role on it.
    svc, me = render.services(request), render.principal(request)
    projects, current = render.projects(request, project)
    rows = []
    if current is not None:
        for d in svc.deployments.list_deployments(me, project=current):
            rows.append(
                {
                    "d": d,
                    "split": view.split(d),
                    "mode": view.mode(d),
                    **_one_hour(svc, me, d.name, current),
                }
            )
    return render.page(
        request,
        "deployments/list.html",
        section="deployments",
        projects=projects,
        project=current,
        rows=rows,
    )


def _timeline(
    svc: Services, me: Principal, name: str, project: str, window: str | None
) -> tuple[str, dict[str, dict[str, Any]]]:
    key, since_s, bucket_s = view.window(window)
    points = svc.deployments.timeline(me, name, since_s=since_s, bucket_s=bucket_s, project=project)
    return key, view.charts(points)


@router.get("/deployments/{name}", openapi_extra=requires("read"))
def deployment(
    request: Request,
    name: str,
    project: str = DEFAULT_PROJECT,
    window: str | None = None,
    done: str | None = None,
) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    key, since_s, _ = view.window(window)
    st = svc.deployments.status(me, name, window_s=since_s, project=project)
    d = st.deployment
    _, specs = _timeline(svc, me, name, project, key)
    report = None
    if len(d.routing.variants) > 1:
        report = svc.deployments.ab_report(me, name, project=project)
    r = d.rollout
    return render.page(
        request,
        "deployments/detail.html",
        section="deployments",
        project=project,
        d=d,
        st=st,
        split=view.split(d),
        mode=view.mode(d),
        rollout=r,
        steps=view.steps(r) if r is not None else [],
        specs=specs,
        window=key,
        windows=list(view.WINDOWS),
        report=report,
        history=list(reversed(svc.deployments.history(me, name, project=project))),
        history_details=view.history_details,
        done=DONE.get(done or ""),
    )


@router.get("/api/deployments/{name}/timeline", openapi_extra=requires("read"))
def timeline(
    request: Request, name: str, project: str = DEFAULT_PROJECT, window: str | None = None
) -> JSONResponse:
    """The page's charts, for its script to redraw every few seconds."""
    svc, me = render.services(request), render.principal(request)
    key, specs = _timeline(svc, me, name, project, window)
    return JSONResponse(
        {"deployment": name, "project": project, "window": key, "charts": specs},
        headers={"Cache-Control": "no-store"},
    )


DONE = {"rollback": "Rolled back", "promote": "Promoted"}
"""What a redirect's ``done`` names; the page says it with the split now in force (a
code, not text from the URL, so no link can make the page say anything else)."""


def _back(name: str, project: str, done: str) -> RedirectResponse:
    query = urlencode({"project": project, "done": done})
    return RedirectResponse(f"/ui/deployments/{quote(name, safe='')}?{query}", status_code=303)


async def _post(request: Request, name: str, done: str, call: Callable[..., Any]) -> Response:
    fields = await form(request)
    session.check_form(request, fields.get(session.CSRF_FIELD))
    project = fields.get("project") or DEFAULT_PROJECT
    await run_in_threadpool(call, render.principal(request), name, project=project)
    return _back(name, project, done)


@router.post("/deployments/{name}/rollback", openapi_extra=requires("write"))
async def rollback(request: Request, name: str) -> Response:
    """Undo the last traffic change; a running canary is aborted back to stable."""
    return await _post(request, name, "rollback", render.services(request).deployments.rollback)


@router.post("/deployments/{name}/promote", openapi_extra=requires("write"))
async def promote(request: Request, name: str) -> Response:
    """Promote the running (or blocked) canary now (a protected alias needs approve)."""
    return await _post(request, name, "promote", render.services(request).deployments.promote)
