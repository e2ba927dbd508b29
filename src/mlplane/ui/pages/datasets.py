"""The datasets pages: the list, a dataset (its versions, and one version's schema,
profile, quality, PII, files and lineage), and the diff of two versions. Everything comes
from stored metadata; no page reads a version's data."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from mlplane.datasets.entities import DatasetVersion
from mlplane.errors import InvalidInput
from mlplane.projects import DEFAULT_PROJECT
from mlplane.server.permissions import requires
from mlplane.ui import render
from mlplane.ui.pages import _datasets_diff as diffs
from mlplane.ui.pages import _datasets_view as view

router = APIRouter(prefix="/ui", include_in_schema=False)


@dataclass
class ListRow:
    version: DatasetVersion
    rows: int | None
    pii: dict[str, str] | None
    """Column → action; None when the version has too many files to read their reports."""


@router.get("/datasets", openapi_extra=requires("read"))
async def datasets(request: Request, project: str | None = None) -> HTMLResponse:
    return await run_in_threadpool(_list, request, project)


@router.get("/datasets/{name}", openapi_extra=requires("read"))
async def dataset(
    request: Request, name: str, project: str | None = None, version: str | None = None
) -> HTMLResponse:
    return await run_in_threadpool(_show, request, name, project or DEFAULT_PROJECT, version)


@router.get("/datasets/{name}/diff", openapi_extra=requires("read"))
async def dataset_diff(
    request: Request,
    name: str,
    project: str | None = None,
    a: str | None = None,
    b: str | None = None,
    column: str | None = None,
) -> HTMLResponse:
    return await run_in_threadpool(
        _diff, request, name, project or DEFAULT_PROJECT, a or None, b or None, column or None
    )


def _list(request: Request, project: str | None) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    projects, current = render.projects(request, project)
    # No readable project: asking the service for the one named (or the default) answers
    # the caller with the 403 it has earned, as the route's level promises.
    newest = svc.data.list_datasets(me, project=current or project or DEFAULT_PROJECT)
    rows = []
    for v in newest:
        if v.file_count > view.PII_LIST_FILES:
            rows.append(ListRow(v, None, None))
            continue
        full = svc.data.get(me, v.ref, project=v.project)
        rows.append(ListRow(v, view.total_rows(full), view.pii_columns(full)))
    return render.page(
        request,
        "datasets/list.html",
        section="datasets",
        projects=projects,
        project=current,
        rows=rows,
        quality=view.quality_badge,
    )


def _selector(version: str | None, newest: int) -> str:
    if version is None or version == "":
        return str(newest)
    return version.strip()


def _show(request: Request, name: str, project: str, version: str | None) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    versions = svc.data.versions(me, name, project=project)
    lineage = svc.dataset_lineage(
        me, f"{name}@{_selector(version, versions[0].version)}", project=project
    )
    v = lineage.version
    return render.page(
        request,
        "datasets/show.html",
        section="datasets",
        project=project,
        name=name,
        versions=versions,
        v=v,
        rows=view.total_rows(v),
        tables=view.table_views(v),
        pii=[(f.path, c) for f in v.files if f.pii is not None for c in f.pii.columns],
        quality=view.quality_badge(v),
        lineage=lineage,
        models=svc.registry.versions_by_runs(me, [r.run_id for r in lineage.runs], project=project),
    )


def _number(field: str, value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"{field}={value!r} is not a version number: use 1, 2, …")
    return int(text)


def _diff(
    request: Request,
    name: str,
    project: str,
    a: str | None,
    b: str | None,
    column: str | None,
) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    first, second = _number("a", a), _number("b", b)
    versions = svc.data.versions(me, name, project=project)
    numbers = [x.version for x in versions]  # newest first
    after = second if second is not None else numbers[0]
    before = first if first is not None else next((n for n in numbers if n < after), after)
    va = svc.data.get(me, f"{name}@{before}", project=project)
    vb = svc.data.get(me, f"{name}@{after}", project=project)
    result = diffs.build(va, vb, column)
    rows_a, rows_b = view.total_rows(va), view.total_rows(vb)
    return render.page(
        request,
        "datasets/diff.html",
        section="datasets",
        project=project,
        name=name,
        versions=versions,
        a=va,
        b=vb,
        d=result.diff,
        tables=result.tables,
        chart=result.chart,
        chart_table=result.chart_table,
        chart_column=result.chart_column,
        rows_a=rows_a,
        rows_b=rows_b,
    )
