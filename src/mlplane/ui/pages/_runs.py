"""A run's page: what it was, what it logged, where it came from, what it read and wrote.

Everything on the page comes from a handful of service calls: the run, its experiment,
every metric history at once (one query), its artifact listing and its logged models.
Charts get at most :data:`MAX_POINTS` points a series: the browser draws the shape, the
table beside it keeps the exact last, min and max.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from mlplane.errors import NotFound
from mlplane.server.permissions import requires
from mlplane.tracking.entities import TAG_NOTE, LifecycleStage, Metric, Run
from mlplane.ui import render, session
from mlplane.ui.pages import _artifacts

router = APIRouter(include_in_schema=False)

SYSTEM_PREFIX = "system/"
MAX_POINTS = 2000
MAX_CHARTS = 40
SYSTEM_TAGS = ("mlflow.", "mlplane.")
KIND_DATASET, KIND_MODEL_IN, KIND_MODEL_OUT = "dataset", "model", "model-output"

# (label, tag keys in order of preference): mlplane's own capture first, then MLflow's.
CONTEXT_TAGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Source", ("mlplane.source.name", "mlflow.source.name")),
    ("Source type", ("mlplane.source.type", "mlflow.source.type")),
    ("Entry point", ("mlflow.project.entryPoint",)),
    ("Git commit", ("mlplane.git.commit", "mlflow.source.git.commit")),
    ("Git branch", ("mlplane.git.branch", "mlflow.source.git.branch")),
    ("Git remote", ("mlplane.git.remote", "mlflow.source.git.repoURL")),
    ("Uncommitted changes", ("mlplane.git.dirty",)),
    ("Started by", ("mlplane.user", "mlflow.user")),
)
ENVIRONMENT_TAGS: tuple[tuple[str, str], ...] = (
    ("Python", "mlplane.python.version"),
    ("Implementation", "mlplane.python.implementation"),
    ("OS", "mlplane.os"),
    ("Host", "mlplane.hostname"),
    ("CPUs", "mlplane.cpu.count"),
    ("CPU", "mlplane.cpu.model"),
    ("Memory (MB)", "mlplane.memory.total_mb"),
    ("GPUs", "mlplane.gpu.count"),
    ("GPU models", "mlplane.gpu.names"),
)
PACKAGE_PREFIX = "mlplane.pkg."
CONTEXT_FILES = ("mlplane/requirements.txt", "mlplane/git.diff")


def _thin(points: Sequence[Metric]) -> Sequence[Metric]:
    """Every n-th point, the last always kept, so a curve of a million steps stays a curve."""
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    kept = list(points[::stride])
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return kept


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def metric_summary(run: Run, histories: Mapping[str, Sequence[Metric]]) -> list[dict[str, Any]]:
    """One row a metric key: the latest value, how many points, their min and max."""
    rows = []
    for key in sorted(set(run.data.metrics) | set(histories)):
        points = histories.get(key, ())
        finite = _finite([p.value for p in points])
        rows.append(
            {
                "key": key,
                "last": run.data.metrics.get(key, points[-1].value if points else None),
                "steps": len(points),
                "min": min(finite) if finite else None,
                "max": max(finite) if finite else None,
                "system": key.startswith(SYSTEM_PREFIX),
            }
        )
    return rows


def chart_spec(title: str, label: str, points: Sequence[Metric], x: str) -> dict[str, Any]:
    thin = _thin(points)
    return {
        "kind": "lines",
        "title": title,
        "x": x,
        "controls": True,
        "series": [
            {
                "label": label,
                "step": [p.step for p in thin],
                "time": [p.timestamp for p in thin],
                "y": [p.value for p in thin],
            }
        ],
    }


def charts(histories: Mapping[str, Sequence[Metric]], system: bool) -> list[dict[str, Any]]:
    """Chart specs for the metrics with more than one point (one point is a table row, not a
    curve), model metrics by step, system metrics against time since the run started."""
    out: list[dict[str, Any]] = []
    for key in sorted(histories):
        if key.startswith(SYSTEM_PREFIX) != system or len(histories[key]) < 2:
            continue
        short = key.removeprefix(SYSTEM_PREFIX) if system else key
        spec = chart_spec(short, key, histories[key], "relative" if system else "step")
        out.append({"id": f"chart-{len(out)}", "key": key, "spec": spec})
    return out


def context(tags: Mapping[str, str]) -> dict[str, Any]:
    """Where the run came from (source, git) and what it ran on, from its system tags."""
    where = []
    for label, keys in CONTEXT_TAGS:
        value = next((tags[k] for k in keys if tags.get(k)), None)
        if value is not None:
            where.append((label, value))
    env = [(label, tags[k]) for label, k in ENVIRONMENT_TAGS if tags.get(k)]
    packages = sorted(
        (k.removeprefix(PACKAGE_PREFIX), v) for k, v in tags.items() if k.startswith(PACKAGE_PREFIX)
    )
    return {"where": where, "environment": env, "packages": packages}


def _parent(request: Request, run: Run) -> dict[str, str] | None:
    pid = run.info.parent_run_id
    if not pid:
        return None
    svc, me = render.services(request), render.principal(request)
    try:
        return {"run_id": pid, "name": svc.tracking.get_run(me, pid).info.run_name}
    except NotFound:  # purged since: the id is all there is
        return {"run_id": pid, "name": pid}


def _logged_models(request: Request, run: Run) -> list[Any]:
    svc, me = render.services(request), render.principal(request)
    found = svc.tracking.search_logged_models(
        me, [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    return list(found.models)


@router.get("/runs/{run_id}", openapi_extra=requires("read"))
async def run_page(request: Request, run_id: str) -> HTMLResponse:
    return await run_in_threadpool(_run_page, request, run_id)


def _run_page(request: Request, run_id: str) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    run = svc.tracking.get_run(me, run_id)  # the permission check, and the 404
    exp = svc.tracking.get_experiment(me, run.info.experiment_id)
    histories = svc.tracking.get_metric_histories(me, run_id)
    summary = metric_summary(run, histories)
    model_charts, system_charts = charts(histories, False), charts(histories, True)
    tags = run.data.tags
    files, listed_all = _artifacts.listing(request, run_id)
    inputs = [i for i in run.inputs if i.kind not in (KIND_MODEL_IN, KIND_MODEL_OUT)]
    return render.page(
        request,
        "experiments/run.html",
        section="experiments",
        run=run,
        experiment=exp,
        parent=_parent(request, run),
        params=sorted(run.data.params.items()),
        metrics=[r for r in summary if not r["system"]],
        system_metrics=[r for r in summary if r["system"]],
        charts=model_charts[:MAX_CHARTS],
        charts_left=max(0, len(model_charts) - MAX_CHARTS),
        system_charts=system_charts[:MAX_CHARTS],
        note=tags.get(TAG_NOTE, ""),
        user_tags=sorted((k, v) for k, v in tags.items() if not k.startswith(SYSTEM_TAGS)),
        system_tags=sorted(
            (k, v) for k, v in tags.items() if k.startswith(SYSTEM_TAGS) and k != TAG_NOTE
        ),
        context=context(tags),
        context_files=[f for f in CONTEXT_FILES if any(a.path == f for a in files)],
        datasets=[i for i in inputs if i.kind == KIND_DATASET],
        other_inputs=[i for i in inputs if i.kind != KIND_DATASET],
        models_in=[i for i in run.inputs if i.kind == KIND_MODEL_IN],
        models_out=[i for i in run.inputs if i.kind == KIND_MODEL_OUT],
        logged_models=_logged_models(request, run),
        registered=svc.registry.versions_by_runs(me, [run_id], project=exp.project),
        tree=_artifacts.tree(files),
        files_count=len(files),
        listed_all=listed_all,
        deleted=run.info.lifecycle_stage == LifecycleStage.DELETED,
    )


# -- delete and restore ----------------------------------------------------------------------


async def _lifecycle(request: Request, run_id: str, restore: bool) -> RedirectResponse:
    from mlplane.ui.app import form  # the app imports the pages

    session.check_form(request, (await form(request)).get(session.CSRF_FIELD))
    svc, me = render.services(request), render.principal(request)
    change = svc.tracking.restore_run if restore else svc.tracking.delete_run
    await run_in_threadpool(change, me, run_id)
    return RedirectResponse(f"/ui/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/delete", openapi_extra=requires("write"))
async def delete_run(request: Request, run_id: str) -> RedirectResponse:
    return await _lifecycle(request, run_id, restore=False)


@router.post("/runs/{run_id}/restore", openapi_extra=requires("write"))
async def restore_run(request: Request, run_id: str) -> RedirectResponse:
    return await _lifecycle(request, run_id, restore=True)
