"""The web UI, mounted on the server by :func:`install`: pages under ``/ui``, their static
files (our CSS and JS, and uPlot from npm, vendored) under ``/ui/static``."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from mlplane import errors
from mlplane.server.permissions import requires
from mlplane.ui import render, session

MAX_FORM = 64 * 1024


class _Static(StaticFiles):
    """Static files with a year of caching: their URLs carry a digest of their content."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the last value of each); a body too large is refused."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise errors.PayloadTooLarge(f"a form may be at most {MAX_FORM} bytes")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in fields.items()}


def _safe_next(target: str | None) -> str:
    """Only a path of the UI itself, so the login page can't be made to send anyone
    elsewhere."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/"


router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/login", openapi_extra=requires("open"))
def login_page(request: Request, next: str | None = None) -> Response:
    if request.app.state.settings.auth == "none":
        return RedirectResponse(_safe_next(next), status_code=303)
    return render.bare_page(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", openapi_extra=requires("open"))
async def login(request: Request) -> Response:
    fields = await form(request)
    token = fields.get("token", "").strip()
    target = _safe_next(fields.get("next"))
    if not session.same_origin(request):
        return render.bare_page(
            request, "login.html", status=403, next=target, error="Sign in from this page."
        )
    client = request.client.host if request.client else "unknown"
    try:
        await run_in_threadpool(
            request.app.state.services.identities.authenticate, token, source=client
        )
    except errors.Unauthenticated as exc:
        return render.bare_page(
            request, "login.html", status=401, next=target, error=f"Not signed in: {exc.message}."
        )
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"
    session.set_session(response, token, secure=secure, max_age=session.SESSION_S)
    return response


@router.post("/logout", openapi_extra=requires("authenticated"))
async def logout(request: Request) -> Response:
    session.check_form(request, (await form(request)).get(session.CSRF_FIELD))
    response = RedirectResponse("/ui/login", status_code=303)
    session.clear_session(response)
    return response


def install(app: FastAPI) -> None:
    """Add the UI's routes and static files to ``app``."""
    from mlplane.ui.pages import PAGES

    @app.get("/", include_in_schema=False, openapi_extra=requires("open"))
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    app.include_router(router)
    for module in PAGES:
        app.include_router(module.router)
    app.mount("/ui/static", _Static(directory=render.STATIC), name="ui-static")
