"""The model registry in the UI: the models of a project, and one model with its versions,
the chosen version's card, files, scan and lineage, and the forms that promote it."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from mlplane.errors import Conflict, InvalidInput, PermissionDenied
from mlplane.projects import DEFAULT_PROJECT
from mlplane.registry._manage import STAGES
from mlplane.registry.entities import ModelVersion, RegisteredModel
from mlplane.server.errors import status_for
from mlplane.server.permissions import requires
from mlplane.ui import render, session
from mlplane.ui.app import form
from mlplane.ui.pages import _models_detail as detail

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/models", openapi_extra=requires("authenticated"))
async def models_list(request: Request, project: str | None = None) -> HTMLResponse:
    # "authenticated", like the overview: the list shows whichever project the caller
    # reads (the picker's choice); the service checks the role on that project.
    return await run_in_threadpool(_list, request, project)


def _list(request: Request, project: str | None) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    projects, current = render.projects(request, project)
    rows: list[dict[str, Any]] = []
    if current is not None:
        for m in svc.registry.list_models(me, project=current):
            versions = svc.registry.versions(me, m.name, project=current)
            rows.append(
                {
                    "model": m,
                    "count": len(versions),
                    "latest": versions[0] if versions else None,
                    "stages": [(v.version, v.stage) for v in versions if v.stage != "None"],
                }
            )
    return render.page(
        request,
        "models/list.html",
        section="models",
        projects=projects,
        project=current,
        rows=rows,
    )


@router.get("/models/{name}", openapi_extra=requires("read"))
async def model_page(
    request: Request,
    name: str,
    project: str | None = None,
    version: str | None = None,
    verify: bool = False,
    done: str | None = None,
) -> HTMLResponse:
    return await run_in_threadpool(
        _model_page,
        request,
        name,
        project or DEFAULT_PROJECT,
        version or None,
        verify=verify,
        done=done,
    )


def _done_message(done: str | None, model: RegisteredModel, versions: list[ModelVersion]) -> str:
    """The confirmation after a form, from the registry's state now (not from the URL's
    text, which anyone can write)."""
    kind, _, value = (done or "").partition(":")
    if kind == "alias" and value in model.aliases:
        return f"{value} → version {model.aliases[value]}"
    if kind == "stage":
        found = next((v for v in versions if str(v.version) == value), None)
        if found is not None:
            return f"version {found.version} is now in stage {found.stage}"
    return ""


def _model_page(
    request: Request,
    name: str,
    project: str,
    version: str | None,
    *,
    verify: bool = False,
    done: str | None = None,
    error: str = "",
    status: int = 200,
) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    model = svc.registry.get_model(me, name, project=project)
    versions = svc.registry.versions(me, name, project=project)
    chosen: ModelVersion | None = versions[0] if versions else None
    if version is not None:
        chosen = svc.registry.get_version(me, f"{name}@{version}", project=project)
    deployments = svc.deployments.list_deployments(me, project=project)
    served_by = {v.version: detail.serving(deployments, name, v.version) for v in versions}
    context: dict[str, Any] = {}
    if chosen is not None:
        run, run_problem = detail.read_run(svc, me, chosen.run_id)
        served = detail.serving(deployments, name, chosen.version)
        context = {
            "run": run,
            "run_problem": run_problem,
            "served": served,
            "card": detail.card_fields(chosen),
            "datasets": [i for i in (run.inputs if run else []) if i.kind == "dataset"],
            "code": detail.code_version(run),
            "checks": detail.check_files(svc, me, chosen, project=project, force=verify),
            "graph": detail.lineage_graph(chosen, run, served, project=project),
            "sensitive": [
                c["name"]
                for part in ("inputs", "outputs")
                for c in ((chosen.signature or {}).get(part) or [])
                if c.get("sensitive")
            ],
        }
    return render.page(
        request,
        "models/model.html",
        status=status,
        section="models",
        project=project,
        model=model,
        versions=versions,
        v=chosen,
        served_by=served_by,
        stages=STAGES,
        done=_done_message(done, model, versions),
        error=error,
        auto_verify=detail.AUTO_VERIFY_BYTES,
        base_url=f"/ui/models/{quote(name, safe='')}?{urlencode({'project': project})}",
        **context,
    )


def _back(name: str, project: str, version: int, done: str) -> RedirectResponse:
    query = urlencode({"project": project, "version": version, "done": done})
    return RedirectResponse(f"/ui/models/{quote(name, safe='')}?{query}", status_code=303)


def _number(text: str) -> int:
    if not text.strip().isdigit():
        raise InvalidInput("choose a version (its number) for the change")
    return int(text)


def _change(request: Request, name: str, fields: dict[str, str], action: Any) -> Response:
    """Run a change the forms ask for; a refusal (bad input, a missing role, the promotion
    policy) is shown on the model page with its status, so the reason stays in view."""
    project = fields.get("project") or DEFAULT_PROJECT
    try:
        # A role check before the input is read: a caller who may not write learns that
        # first, whatever else is wrong with the form. The service checks again.
        if not render.can(request, "write", project):
            raise PermissionDenied(f"changing a model needs the contributor role in {project!r}")
        return action(project)  # type: ignore[no-any-return]
    except (InvalidInput, PermissionDenied, Conflict) as exc:
        shown = fields.get("version", "").strip()
        return _model_page(
            request,
            name,
            project,
            shown if shown.isdigit() else None,
            error=exc.message,
            status=status_for(exc),
        )


@router.post("/models/{name}/aliases", openapi_extra=requires("write"))
async def set_alias(request: Request, name: str) -> Response:
    fields = await form(request)
    session.check_form(request, fields.get("csrf"))
    svc, me = render.services(request), render.principal(request)

    def act(project: str) -> Response:
        alias = fields.get("alias", "").strip()
        number = _number(fields.get("version", ""))
        v = svc.registry.set_alias(me, name, alias, number, project=project)
        return _back(name, project, v.version, f"alias:{alias}")

    return await run_in_threadpool(_change, request, name, fields, act)


@router.post("/models/{name}/stage", openapi_extra=requires("write"))
async def set_stage(request: Request, name: str) -> Response:
    fields = await form(request)
    session.check_form(request, fields.get("csrf"))
    svc, me = render.services(request), render.principal(request)

    def act(project: str) -> Response:
        number = _number(fields.get("version", ""))
        stage = fields.get("stage", "").strip()
        if not stage:
            raise InvalidInput(f"choose a stage: {', '.join(STAGES)}")
        v = svc.registry.set_stage(
            me,
            f"{name}@{number}",
            stage,
            archive_existing=fields.get("archive_existing") == "on",
            project=project,
        )
        return _back(name, project, v.version, f"stage:{v.version}")

    return await run_in_threadpool(_change, request, name, fields, act)
