"""Writing answers on the raw ASGI paths, and errors in one shape.

A domain error becomes the status :mod:`mlplane.server.errors` gives its class (one table
for the whole project) and a problem+json body; on the Open Inference Protocol's paths the
body also carries ``error`` (what its clients read) and is ``application/json``.
"""

from __future__ import annotations

from typing import Any

import orjson

from mlplane.errors import MlplaneError, Unauthenticated
from mlplane.server.errors import status_for

PROBLEM = b"application/problem+json"
_CHALLENGE = [
    (b"www-authenticate", b'Bearer realm="mlplane"'),
    (b"www-authenticate", b'Basic realm="mlplane"'),
]


def error_parts(
    exc: MlplaneError | None, *, v2: bool = False
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, body and headers for a domain error (None: an unexpected one, a 500 that
    says nothing of the internals)."""
    if exc is None:
        status, title, detail, code = (
            500,
            "InternalError",
            "internal server error",
            "INTERNAL_ERROR",
        )
        extra: dict[str, Any] = {}
    else:
        status, title, detail, code = status_for(exc), type(exc).__name__, exc.message, exc.code
        extra = {k: v for k, v in exc.details.items() if k in ("column", "retry_after")}
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    if v2:
        body["error"] = detail
    payload = orjson.dumps(body, default=str)
    headers = [
        (b"content-type", b"application/json" if v2 else PROBLEM),
        (b"content-length", str(len(payload)).encode()),
    ]
    if isinstance(exc, Unauthenticated):
        headers.extend(_CHALLENGE)
    if "retry_after" in extra:
        headers.append((b"retry-after", str(extra["retry_after"]).encode()))
    return status, payload, headers


async def send(send_: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send_({"type": "http.response.start", "status": status, "headers": headers})
    await send_({"type": "http.response.body", "body": body})
