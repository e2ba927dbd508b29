"""Who is calling: every request is authenticated here, before any route runs.

With ``auth = "token"`` a request carries an API token, as ``Authorization:
Bearer <token>`` (our SDK, ``MLFLOW_TRACKING_TOKEN``) or as the password of HTTP
Basic (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``; the user name is ignored, the
token says who it is). Only the health, readiness, metrics and version routes are
open. With ``auth = "none"`` every loopback caller acts as a platform admin and
anyone else is turned away, in case the server was bound wider by hand.

It is middleware rather than a route dependency so that no route, present or
future, MLflow's included, can be reached without it.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mlplane import errors
from mlplane.security import Principal
from mlplane.security.identities import IdentityService
from mlplane.security.network import is_loopback
from mlplane.server.errors import domain_response

SCOPE_KEY = "mlplane.principal"
"""Where the authenticated principal travels in the ASGI scope (read by ``deps.principal``)."""

OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/health", "/version"})
"""No token: probes, scrapers, and ``/``, which only redirects to the UI."""
UI_PREFIX = "/ui/"
UI_OPEN = ("/ui/static/", "/ui/login")
"""The UI's stylesheets, scripts and login page: what a browser needs before it has a token."""
UI_API = "/ui/api/"
COOKIE = "mlplane_token"
"""The UI's session: the API token itself, in an HttpOnly, SameSite=Strict cookie scoped to
``/ui`` (so revoking the token ends the session at once). API routes never read it: a
cookie is sent by the browser on its own, and only UI forms carry the CSRF check."""
VIA_KEY = "mlplane.credential"
"""How the caller authenticated: ``header``, ``cookie`` or ``none`` (auth = none)."""
CAPABILITY_PUTS = ("/api/2.0/mlflow-artifacts/mpu/parts/",)
"""Part uploads of a multipart upload: MLflow clients send them to the URLs the (token-
checked) create call handed out, without credentials, as to presigned URLs. The random
upload id in the path is the capability; the route accepts parts of live uploads only."""
_CHALLENGE = [
    (b"www-authenticate", b'Bearer realm="mlplane"'),
    (b"www-authenticate", b'Basic realm="mlplane"'),
]


def credential(authorization: str) -> str | None:
    """The token in an ``Authorization`` header value (Bearer, or Basic's password)."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        # Some clients put a token in the user name and leave the password empty.
        return password or user or None
    return None


def _capability(scope: Scope) -> bool:
    return scope["method"] == "PUT" and scope["path"].startswith(CAPABILITY_PUTS)


class AuthMiddleware:
    """Puts the caller's :class:`Principal` in the scope, or answers 401 itself."""

    def __init__(self, app: ASGIApp, *, mode: str, identities: IdentityService) -> None:
        self.app = app
        self.mode = mode
        self.identities = identities

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or _capability(scope):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        ui = path.startswith(UI_PREFIX)
        if ui and path.startswith(UI_OPEN):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        source = client[0] if client else "unknown"
        try:
            scope[SCOPE_KEY] = await self._principal(scope, source, ui=ui)
        except errors.MlplaneError as exc:
            if ui and isinstance(exc, errors.Unauthenticated) and _page_view(scope):
                await _to_login(scope)(scope, receive, send)
            else:
                await _refusal(path, exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _principal(self, scope: Scope, source: str, *, ui: bool) -> Principal:
        if self.mode == "none":
            if not is_loopback(source):
                raise errors.PermissionDenied(
                    "this server runs without authentication (auth = none) and answers "
                    "loopback clients only"
                )
            scope[VIA_KEY] = "none"
            return Principal(name="anonymous", is_platform_admin=True, source=source)
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        secret = credential(header.decode("latin-1")) if header is not None else None
        scope[VIA_KEY] = "header"
        if secret is None and ui:
            secret = cookie_token(scope)
            scope[VIA_KEY] = "cookie"
        if secret is None:
            raise errors.Unauthenticated(
                "authentication required: send an API token as 'Authorization: Bearer "
                "<token>' (MLPLANE_TOKEN, MLFLOW_TRACKING_TOKEN) or as the HTTP Basic password"
            )
        scope["mlplane.secret"] = secret
        return await run_in_threadpool(self.identities.authenticate, secret, source=source)


def cookie_token(scope: Scope) -> str | None:
    """The UI session's token, from the ``Cookie`` header."""
    for key, value in scope["headers"]:
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, _, token = part.strip().partition("=")
            if name == COOKIE and token:
                return token
    return None


def _page_view(scope: Scope) -> bool:
    """A browser asking for a page (not the UI's JSON, not a form post)."""
    return scope["method"] in ("GET", "HEAD") and not scope["path"].startswith(UI_API)


def _to_login(scope: Scope) -> Response:
    """To the login page, back here after it; a stale session cookie is dropped."""
    target = scope["path"] + (
        ("?" + scope["query_string"].decode()) if scope["query_string"] else ""
    )
    response = Response(status_code=303, headers={"Location": "/ui/login?next=" + quote(target)})
    if cookie_token(scope) is not None:
        response.delete_cookie(COOKIE, path="/ui")
    return response


def _refusal(path: str, exc: errors.MlplaneError) -> Response:
    response = domain_response(path, exc)
    if isinstance(exc, errors.Unauthenticated):
        response.raw_headers.extend(_CHALLENGE)
    return response
