"""Security headers on every response, and CORS closed unless origins are configured.

It wraps the whole middleware stack, outside Starlette's ``ServerErrorMiddleware``, so
the 500s that middleware renders carry the headers too. It is plain ASGI (not
``BaseHTTPMiddleware``, which buffers streaming responses such as artifact downloads).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlplane.config import Settings

API_POLICY = "default-src 'none'; frame-ancestors 'none'"
"""Nothing an API response says may run or load anything in a browser: an artifact
that is an HTML page stays inert even when opened directly."""
HSTS = "max-age=31536000"
_FIXED = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
)
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
_SWAGGER_CDN = "https://cdn.jsdelivr.net"


def docs_policy(page: bytes) -> str:
    """The policy of a Swagger UI page: its assets from the CDN FastAPI links to, its
    own inline scripts by hash (so no other inline script runs), the spec from here."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'none'; script-src {_SWAGGER_CDN} {hashes}; "
        # Swagger UI sets style attributes from its scripts; styles cannot run code.
        f"style-src {_SWAGGER_CDN} 'unsafe-inline'; img-src 'self' data: "
        "https://fastapi.tiangolo.com; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    )


class SecurityHeaders:
    """Adds the headers to every HTTP response; a route's own value of one is kept."""

    def __init__(self, app: ASGIApp, *, docs_paths: Sequence[str] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(docs_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("scheme") == "https"
        if scope["path"] in self.docs_paths:
            await self.app(scope, receive, _DocsPage(send, tls))
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                _add(MutableHeaders(scope=message), API_POLICY, tls)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _DocsPage:
    """Holds a (small, unstreamed) docs page until its end to hash its inline scripts."""

    def __init__(self, send: Send, tls: bool) -> None:
        self.send, self.tls = send, tls
        self.start: Message | None = None
        self.body: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.body.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        page = b"".join(self.body)
        _add(MutableHeaders(scope=self.start), docs_policy(page), self.tls)
        await self.send(self.start)
        await self.send({"type": "http.response.body", "body": page})


def _add(headers: MutableHeaders, policy: str, tls: bool) -> None:
    for name, value in _FIXED:
        headers.setdefault(name, value)
    headers.setdefault("Content-Security-Policy", policy)
    headers.setdefault("Cache-Control", "no-store")
    if tls:  # sent over plain HTTP it would be ignored, and would lie about the server
        headers.setdefault("Strict-Transport-Security", HSTS)


def install(app: FastAPI, settings: Settings) -> None:
    """Wrap the app's middleware stack, built lazily by Starlette, in these layers."""
    build = app.build_middleware_stack
    docs = [p for p in (app.docs_url, app.swagger_ui_oauth2_redirect_url) if p]

    def stack() -> ASGIApp:
        inner = build()
        if settings.cors_origins:
            # Outside authentication: a browser's preflight carries no credentials.
            inner = CORSMiddleware(
                inner,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        return SecurityHeaders(inner, docs_paths=docs)

    app.build_middleware_stack = stack  # type: ignore[method-assign]
