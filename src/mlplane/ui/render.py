"""Pages from Jinja2 templates: one environment, the filters every page uses, one way to
render (:func:`page`), so each page module is only its query and its template."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from mlplane._version import __version__
from mlplane.errors import Unauthenticated
from mlplane.security import Permission, Principal, allowed
from mlplane.server.auth import SCOPE_KEY
from mlplane.services import Services
from mlplane.ui import session

HERE = Path(__file__).parent
STATIC = HERE / "static"
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
"""The pages' Content-Security-Policy: scripts and styles from our static folder only, no
inline script (data reaches scripts as ``<script type="application/json">``), forms post
only here."""
HEADERS = {"Content-Security-Policy": POLICY, "Referrer-Policy": "same-origin"}
"""Every page's own headers. ``same-origin``, not the API's ``no-referrer``: under that
policy Chromium sends ``Origin: null`` with a form post, and the CSRF check needs the
origin (other sites still learn nothing)."""


@functools.cache
def _asset_version() -> str:
    """A digest of the static files: a changed file gets a new URL, so they can be cached
    for a year."""
    h = hashlib.blake2b(__version__.encode(), digest_size=6)
    for path in sorted(STATIC.rglob("*")):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def static_url(path: str) -> str:
    return f"/ui/static/{path}?v={_asset_version()}"


def when(ms: int | None) -> str:
    """A timestamp in milliseconds as ``2026-12-07 22:41:05`` (UTC)."""
    if not ms:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(start_ms: int | None, end_ms: int | None) -> str:
    """``1h 02m``, ``3m 05s``, ``12.3s``; empty while either end is missing."""
    if not start_ms or not end_ms or end_ms < start_ms:
        return ""
    s = (end_ms - start_ms) / 1000
    if s < 60:
        return f"{s:.1f}s"
    m, s = divmod(int(s), 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def num(value: Any, digits: int = 4) -> str:
    """A number short enough for a table cell: 4 significant digits, thousands apart."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def size(n: int | None) -> str:
    """Bytes as ``1.2 MiB``."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def as_json(value: Any) -> Markup:
    """``value`` as JSON safe inside ``<script type="application/json">``: no ``</``
    can close the element, whatever a run name or tag holds."""
    text = json.dumps(value, default=str, separators=(",", ":"), allow_nan=False)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _json_safe(value: Any) -> Any:
    """NaN and infinities (which JSON lacks) as null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@functools.cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(("html",), default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        num=num,
        size=size,
        duration=duration,
        json=lambda v: as_json(_json_safe(v)),
    )
    env.globals.update(static=static_url, version=__version__)
    return env


def principal(request: Request) -> Principal:
    found = request.scope.get(SCOPE_KEY)
    if not isinstance(found, Principal):
        raise Unauthenticated("sign in to see this page")
    return found


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def can(request: Request, permission: str, project: str) -> bool:
    """Whether the caller holds ``permission`` on ``project``: pages show a write button
    only then (the service refuses anyway)."""
    return allowed(principal(request), Permission(permission), project)


def page(
    request: Request, template: str, *, status: int = 200, section: str = "", **context: Any
) -> HTMLResponse:
    """Render ``template`` with what every page needs: the caller, the CSRF token for its
    forms, the section of the navigation to highlight."""
    me = principal(request)
    html = (
        environment()
        .get_template(template)
        .render(
            request=request,
            me=me,
            csrf=session.csrf_token(request),
            section=section,
            can=lambda permission, project: can(request, permission, project),
            **context,
        )
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def bare_page(
    request: Request, template: str, *, status: int = 200, **context: Any
) -> HTMLResponse:
    """A page for a caller who may not be signed in (the login page)."""
    html = environment().get_template(template).render(request=request, me=None, **context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error as a page: what went wrong, in the layout, with the API's status."""
    if isinstance(request.scope.get(SCOPE_KEY), Principal):
        return page(request, "error.html", status=status, code=status, message=message)
    return bare_page(request, "error.html", status=status, code=status, message=message)


def projects(request: Request, wanted: str | None) -> tuple[list[str], str | None]:
    """The projects the caller may read, and the one to show: ``wanted`` if readable, else
    ``default``, else the first (None when the caller reads none)."""
    from mlplane.projects import DEFAULT_PROJECT

    names = services(request).readable_projects(principal(request))
    if wanted is not None and wanted in names:
        return names, wanted
    if wanted is not None and can(request, "read", wanted):
        return [*names, wanted], wanted  # a role on a project that holds nothing yet
    if DEFAULT_PROJECT in names or (not names and can(request, "read", DEFAULT_PROJECT)):
        return names or [DEFAULT_PROJECT], DEFAULT_PROJECT
    return names, names[0] if names else None
