"""Signing in and out of the UI, and the CSRF check of its forms.

A session is the API token itself in a cookie (see :data:`mlplane.server.auth.COOKIE`):
no second credential to store, expire or revoke. A form that changes something carries a
CSRF token derived from the session's token, and its ``Origin`` must be this server:
a page on another site can make the browser post the cookie, but can read neither.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

from fastapi import Request
from starlette.responses import Response

from mlplane import errors
from mlplane.server.auth import COOKIE, VIA_KEY

CSRF_FIELD = "csrf"
SESSION_S = 12 * 3600
"""How long the browser keeps the cookie (the token's own expiry ends it sooner)."""


def _secret(request: Request) -> str:
    secret = request.scope.get("mlplane.secret")
    if isinstance(secret, str):
        return secret
    # auth = none: no token. The form check still needs a value no other site can read.
    settings = request.app.state.settings
    return f"anonymous:{settings.home}:{settings.uri or ''}"


def csrf_token(request: Request) -> str:
    """The value the session's forms carry in their hidden ``csrf`` field."""
    return hmac.new(b"mlplane-ui-csrf", _secret(request).encode(), hashlib.sha256).hexdigest()[:32]


def same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (or, lacking it, ``Referer``) is this server."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return False
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def check_form(request: Request, token: str | None) -> None:
    """Refuse a state-changing form post that did not come from our own page.

    Callers that authenticate with an ``Authorization`` header (scripts, tests) are not
    exposed to CSRF (a browser never adds that header by itself) and pass."""
    if request.scope.get(VIA_KEY) == "header":
        return
    if not same_origin(request):
        raise errors.PermissionDenied(
            "this form must be sent from the mlplane UI (its Origin is another site)"
        )
    if not token or not hmac.compare_digest(token, csrf_token(request)):
        raise errors.PermissionDenied(
            "the form's CSRF token is missing or stale: reload the page and try again"
        )


def set_session(response: Response, token: str, *, secure: bool, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=secure,
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui")
