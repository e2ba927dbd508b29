"""The audit log, for platform admins: its events newest first with filters, and the
chain's verification on request.

:meth:`AuditService.events` filters by action, actor and a start time in the database
and returns the newest N. The other filters (free text, project, an end time) are
applied here, over a window of its answers that grows until a page is full or the log
is exhausted; pages are counted from the newest event. Verification reads the whole
chain, so it runs only when asked for (a POST), never on a page view.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from mlplane.errors import InvalidInput
from mlplane.security import Principal
from mlplane.security.audit import AuditEvent, VerifyReport
from mlplane.server.permissions import requires
from mlplane.services import Services
from mlplane.ui import render, session
from mlplane.ui.app import form

router = APIRouter(prefix="/ui", include_in_schema=False)
PER_PAGE = 100
MAX_PAGE = 1000
FIRST_WINDOW = 1000
"""Events asked for at first when a filter is applied here; the window quadruples."""


def _time(value: str | None, field: str) -> int | None:
    """``2026-12-07``, ``2026-12-07T22:41`` (a datetime-local field) or a full ISO time
    as ms; a naive time is UTC, as the page shows every time in UTC."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{field} {value!r} is not a time: use e.g. 2026-12-07 or 2026-12-07T22:41"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Filters:
    q: str = ""
    actor: str = ""
    action: str = ""
    project: str = ""
    since: str = ""
    until: str = ""

    def query(self, **extra: Any) -> str:
        fields = {k: getattr(self, k) for k in self.__slots__ if getattr(self, k)}
        return urlencode({**fields, **extra})


def _project_names(svc: Services, me: Principal) -> dict[int, str]:
    """Every project's id and name (the log records ids). The caller is a platform admin
    (the audit service checked), who reads every project."""
    return svc.project_names(me)


def _search(
    svc: Services, me: Principal, f: Filters, names: dict[int, str], page: int
) -> tuple[list[AuditEvent], bool]:
    """The page's events, newest first, and whether an older page exists."""
    since, until = _time(f.since, "since"), _time(f.until, "until")
    by_name = {n: i for i, n in names.items()}
    if f.project and f.project not in by_name:
        raise InvalidInput(f"no project named {f.project!r}")
    project_id = by_name.get(f.project) if f.project else None
    q = f.q.lower()

    def keep(e: AuditEvent) -> bool:
        if until is not None and e.time > until:
            return False
        if project_id is not None and e.project_id != project_id:
            return False
        if not q:
            return True
        text = " ".join((e.actor, e.action, e.resource, e.outcome, e.source))
        return q in text.lower() or q in json.dumps(e.details, default=str).lower()

    need = page * PER_PAGE + 1  # one more than this page: is there an older one?
    local = bool(q or project_id is not None or until is not None)
    limit = max(need, FIRST_WINDOW) if local else need
    while True:
        found = svc.audit.events(
            me, since_ms=since, action=f.action or None, actor=f.actor or None, limit=limit
        )
        matched = [e for e in reversed(found) if keep(e)]
        if len(matched) >= need or len(found) < limit:
            break
        limit *= 4
    start = (page - 1) * PER_PAGE
    return matched[start : start + PER_PAGE], len(matched) > page * PER_PAGE


def _as_text(details: dict[str, Any], indent: int | None = None) -> str:
    """An event's details as JSON text (escaped by the template, like any text)."""
    return json.dumps(details, sort_keys=True, indent=indent, default=str)


def _page(
    request: Request, f: Filters, page: int, verified: VerifyReport | None = None
) -> HTMLResponse:
    svc, me = render.services(request), render.principal(request)
    # The service's own check first: it refuses (and audits) a caller who is no
    # platform admin before anything else is read or validated.
    svc.audit.events(me, limit=1)
    if not 1 <= page <= MAX_PAGE:
        raise InvalidInput(f"page must be between 1 and {MAX_PAGE}")
    names = _project_names(svc, me)
    events, older = _search(svc, me, f, names, page)
    prev_url = f"/ui/audit?{f.query(page=page - 1)}" if page > 1 else None
    next_url = f"/ui/audit?{f.query(page=page + 1)}" if older else None
    return render.page(
        request,
        "audit/list.html",
        section="audit",
        f=f,
        events=events,
        names=names,
        projects=sorted(names.values()),
        page=page,
        prev_url=prev_url,
        next_url=next_url,
        verified=verified,
        filtered=f != Filters(),
        as_text=_as_text,
    )


@router.get("/audit", openapi_extra=requires("platform"))
def audit(
    request: Request,
    q: str = "",
    actor: str = "",
    action: str = "",
    project: str = "",
    since: str = "",
    until: str = "",
    page: int = 1,
) -> HTMLResponse:
    f = Filters(q.strip(), actor.strip(), action.strip(), project.strip(), since, until)
    return _page(request, f, page)


@router.post("/audit/verify", openapi_extra=requires("platform"))
async def verify(request: Request) -> HTMLResponse:
    """Walk the whole chain (every hash, link and signed checkpoint) and show the result
    over the log's first page."""
    fields = await form(request)
    session.check_form(request, fields.get(session.CSRF_FIELD))
    svc, me = render.services(request), render.principal(request)
    report = await run_in_threadpool(svc.audit.verify, me)
    return await run_in_threadpool(_page, request, Filters(), 1, report)
