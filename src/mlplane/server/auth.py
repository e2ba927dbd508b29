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

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/health", "/version"})
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
        client = scope.get("client")
        source = client[0] if client else "unknown"
        try:
            scope[SCOPE_KEY] = await self._principal(scope, source)
        except errors.MlplaneError as exc:
            await _refusal(scope["path"], exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _principal(self, scope: Scope, source: str) -> Principal:
        if self.mode == "none":
            if not is_loopback(source):
                raise errors.PermissionDenied(
                    "this server runs without authentication (auth = none) and answers "
                    "loopback clients only"
                )
            return Principal(name="anonymous", is_platform_admin=True, source=source)
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        secret = credential(header.decode("latin-1")) if header is not None else None
        if secret is None:
            raise errors.Unauthenticated(
                "authentication required: send an API token as 'Authorization: Bearer "
                "<token>' (MLPLANE_TOKEN, MLFLOW_TRACKING_TOKEN) or as the HTTP Basic password"
            )
        return await run_in_threadpool(self.identities.authenticate, secret, source=source)


def _refusal(path: str, exc: errors.MlplaneError) -> Response:
    response = domain_response(path, exc)
    if isinstance(exc, errors.Unauthenticated):
        response.raw_headers.extend(_CHALLENGE)
    return response
