"""The experiments section: the experiment list, an experiment's run table, and (through
:mod:`._runs` and :mod:`._artifacts`) a run's page and its files.

The run table is the busy page. Sorting, filtering and paging are all the store's: one
``search_runs`` call per page, cut to the page size, so a page costs the same with ten runs
or ten thousand. The state of the table lives in its URL (filter, order, columns, page),
so every link keeps it and a page can be shared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from mlplane.errors import InvalidInput
from mlplane.server.permissions import requires
from mlplane.tracking import search
from mlplane.tracking._base import encode_page_token
from mlplane.tracking.entities import Run, ViewType
from mlplane.ui import render
from mlplane.ui.pages import _artifacts, _runs

router = APIRouter(prefix="/ui", include_in_schema=False)
router.include_router(_runs.router)
router.include_router(_artifacts.router)

VIEWS = {"active": ViewType.ACTIVE_ONLY, "deleted": ViewType.DELETED_ONLY, "all": ViewType.ALL}
PAGE_SIZE = 50
PAGE_SIZES = (10, 500)
EXPERIMENTS_PAGE = 100
DEFAULT_COLUMNS = 6
SYSTEM_PREFIX = "system/"


def _int(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}, got {value}")
    return value


def _view(raw: str | None) -> str:
    view = raw or "active"
    if view not in VIEWS:
        raise InvalidInput(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    return view


# -- the experiment list ---------------------------------------------------------------------


@router.get("/experiments", openapi_extra=requires("authenticated"))
async def experiments(request: Request) -> HTMLResponse:
    return await run_in_threadpool(_experiments, request)


def _experiments(request: Request) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    args = request.query_params
    projects, current = render.projects(request, args.get("project"))
    q = (args.get("q") or "").strip()
    view = _view(args.get("view"))
    page = _int(args.get("page"), "page", 1, 1, 1_000_000)
    exps: list[Any] = []
    more = False
    if current is not None:
        found = svc.tracking.search_experiments(
            me,
            project=current,
            view_type=VIEWS[view],
            name_like=f"%{q}%" if q else None,
            max_results=EXPERIMENTS_PAGE,
            page_token=encode_page_token((page - 1) * EXPERIMENTS_PAGE) if page > 1 else None,
        )
        exps, more = found.experiments, found.next_page_token is not None

    def href(n: int) -> str:
        items = {"project": current or "", "q": q, "view": "" if view == "active" else view}
        items["page"] = "" if n == 1 else str(n)
        return "/ui/experiments?" + urlencode({k: v for k, v in items.items() if v})

    return render.page(
        request,
        "experiments/list.html",
        section="experiments",
        projects=projects,
        project=current,
        q=q,
        view=view,
        experiments=exps,
        prev_url=href(page - 1) if page > 1 else None,
        next_url=href(page + 1) if more else None,
        first=(page - 1) * EXPERIMENTS_PAGE + 1,
    )


# -- an experiment's runs --------------------------------------------------------------------


def _keys(values: Sequence[str]) -> tuple[str, ...] | None:
    """Column keys from ``?params=a,b`` (or the chooser's repeated fields); None when the URL
    names none at all, so the page picks its defaults. A present but empty list means "no
    columns of this kind"."""
    if not values:
        return None
    out: dict[str, None] = {}
    for value in values:
        for key in value.split(","):
            if key.strip():
                out[key.strip()] = None
    return tuple(out)


@dataclass(frozen=True)
class RunQuery:
    """What the run table shows, as it is spelled in its URL."""

    experiment_id: str
    filter: str = ""
    order: str = ""
    view: str = "active"
    page: int = 1
    page_size: int = PAGE_SIZE
    params: tuple[str, ...] | None = None
    metrics: tuple[str, ...] | None = None

    @classmethod
    def from_request(cls, experiment_id: str, request: Request) -> RunQuery:
        args = request.query_params
        return cls(
            experiment_id=experiment_id,
            filter=(args.get("filter") or "").strip(),
            order=(args.get("order") or "").strip(),
            view=_view(args.get("view")),
            page=_int(args.get("page"), "page", 1, 1, 1_000_000),
            page_size=_int(args.get("page_size"), "page_size", PAGE_SIZE, *PAGE_SIZES),
            params=_keys(args.getlist("params")),
            metrics=_keys(args.getlist("metrics")),
        )

    def items(self) -> list[tuple[str, str]]:
        """The non-default fields, for a URL or a form's hidden inputs."""
        out = [("filter", self.filter), ("order", self.order)]
        out.append(("view", "" if self.view == "active" else self.view))
        out.append(("page_size", "" if self.page_size == PAGE_SIZE else str(self.page_size)))
        kept = [(k, v) for k, v in out if v]
        for name, keys in (("params", self.params), ("metrics", self.metrics)):
            if keys is not None:
                kept.append((name, ",".join(keys)))
        if self.page > 1:
            kept.append(("page", str(self.page)))
        return kept

    def href(self, **changes: Any) -> str:
        q = replace(self, **changes)
        base = f"/ui/experiments/{q.experiment_id}"
        items = q.items()
        return base + ("?" + urlencode(items) if items else "")

    @property
    def token(self) -> str | None:
        """The service's own page token for this page (an offset)."""
        return encode_page_token((self.page - 1) * self.page_size) if self.page > 1 else None


@dataclass(frozen=True)
class Column:
    """A sortable header: the search key it orders by, and its first direction."""

    label: str
    entity: str
    key: str
    numeric: bool

    @property
    def ident(self) -> str:
        return f"{self.entity}.{search.render_key(self.key)}"


def _sort_links(
    q: RunQuery, current: search.OrderKey | None, columns: Sequence[Column]
) -> dict[str, dict[str, Any]]:
    """Per column: the link that sorts by it (flipping when it already sorts), and whether
    it is the current sort. Without ``?order=`` the store sorts by start time, newest first."""
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        if current is not None:
            on = current.entity == col.entity and current.key == col.key
            asc = current.ascending
        else:
            on, asc = (col.entity, col.key) == ("attributes", "start_time"), False
        # A new column: numbers (metrics, times) biggest first, text A to Z.
        ascending = not asc if on else not col.numeric
        order = f"{col.ident} {'ASC' if ascending else 'DESC'}"
        out[col.ident] = {"href": q.href(order=order, page=1), "sorted": on, "asc": on and asc}
    return out


def _default_keys(counts: Counter[str], limit: int = DEFAULT_COLUMNS) -> tuple[str, ...]:
    """The keys most of the page's runs have, then by name."""
    return tuple(sorted(counts, key=lambda k: (-counts[k], k))[:limit])


def _columns(q: RunQuery, runs: Sequence[Run]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    p_count = Counter(k for r in runs for k in r.data.params)
    m_count = Counter(k for r in runs for k in r.data.metrics if not k.startswith(SYSTEM_PREFIX))
    params = q.params if q.params is not None else _default_keys(p_count)
    metrics = q.metrics if q.metrics is not None else _default_keys(m_count)
    return params, metrics


@router.get("/experiments/{experiment_id}", openapi_extra=requires("read"))
async def experiment_runs(request: Request, experiment_id: str) -> HTMLResponse:
    return await run_in_threadpool(_experiment_runs, request, experiment_id)


def _experiment_runs(request: Request, experiment_id: str) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    exp = svc.tracking.get_experiment(me, experiment_id)  # the permission check, and the 404
    q = RunQuery.from_request(exp.experiment_id, request)
    runs: list[Run] = []
    more = False
    error = ""
    current: search.OrderKey | None = None
    try:
        current = search.parse_order_by([q.order])[0] if q.order else None
    except InvalidInput as exc:  # dropped from the links, so one click starts afresh
        error = f"Cannot sort so: {exc.message}"
        q = replace(q, order="")
    if not error:
        try:
            found = svc.tracking.search_runs(
                me,
                [exp.experiment_id],
                filter_string=q.filter or None,
                view_type=VIEWS[q.view],
                max_results=q.page_size,
                order_by=[q.order] if q.order else None,
                page_token=q.token,
            )
            runs, more = found.runs, found.next_page_token is not None
        except InvalidInput as exc:  # the parser's message, with the form kept as typed
            error = exc.message
    params, metrics = _columns(q, runs)
    fixed = [
        Column("Run", "attributes", "run_name", False),
        Column("Status", "attributes", "status", False),
        Column("Started", "attributes", "start_time", True),
        Column("User", "attributes", "user_id", False),
    ]
    keyed = [Column(k, "params", k, False) for k in params]
    keyed += [Column(k, "metrics", k, True) for k in metrics]
    sorts = _sort_links(q, current, [*fixed, *keyed])
    available_params = sorted({k for r in runs for k in r.data.params} | set(params))
    available_metrics = sorted({k for r in runs for k in r.data.metrics} | set(metrics))
    offset = (q.page - 1) * q.page_size
    return render.page(
        request,
        "experiments/runs.html",
        status=400 if error else 200,
        section="experiments",
        experiment=exp,
        q=q,
        runs=runs,
        error=error,
        params=params,
        metrics=metrics,
        fixed=fixed,
        keyed=keyed,
        sorts=sorts,
        available_params=available_params,
        available_metrics=available_metrics,
        user_tags={k: v for k, v in exp.tags.items() if not k.startswith(("mlflow.", "mlplane."))},
        prev_url=q.href(page=q.page - 1) if q.page > 1 else None,
        next_url=q.href(page=q.page + 1) if more else None,
        summary=f"runs {offset + 1} to {offset + len(runs)}" if runs else "",
    )
