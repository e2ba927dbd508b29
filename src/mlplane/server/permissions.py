"""The permission each route of the server needs, declared as data.

Every route states its level where it is declared, with ``openapi_extra=requires(...)``,
so the level also shows in the OpenAPI document as ``x-mlplane-permission``. Routes
that are not FastAPI API routes (``/metrics``, FastAPI's own ``/openapi.json`` and
``/docs``) have no ``openapi_extra``; theirs are in :data:`PLAIN_ROUTES`.

This is a contract, not a second enforcement layer: the services check permissions
themselves (:class:`~mlplane.security.access.Guard`), and
``tests/security/test_route_matrix.py`` sends every route as every kind of caller and
holds each answer to the declared level. A route declares the least it needs; some
requests need more, decided by the service from the data (a protected alias or the
Production stage needs ``approve``; shredding or accepting an unknown scan verdict
needs ``admin``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from mlplane.security.access import Permission

KEY = "x-mlplane-permission"


class Access(StrEnum):
    """What a caller needs to be let through a route."""

    READ = Permission.READ.value
    WRITE = Permission.WRITE.value
    APPROVE = Permission.APPROVE.value
    ADMIN = Permission.ADMIN.value
    PREDICT = Permission.PREDICT.value
    PLATFORM = "platform"
    """``admin`` on every project (role ``admin`` on ``*``, or a platform admin)."""
    AUTHENTICATED = "authenticated"
    """Any valid token, whatever its roles: the route shows nothing of any project."""
    OPEN = "open"
    """No token: health, readiness, metrics and version, for probes and scrapers."""
    CAPABILITY = "capability"
    """No token: the unguessable id in the path is the credential (multipart parts)."""


PLAIN_ROUTES: dict[tuple[str, str], Access] = {
    ("GET", "/metrics"): Access.OPEN,
    ("GET", "/openapi.json"): Access.AUTHENTICATED,
    ("GET", "/docs"): Access.AUTHENTICATED,
    ("GET", "/docs/oauth2-redirect"): Access.AUTHENTICATED,
}
"""Routes without ``openapi_extra``, by (method, path template)."""


def requires(access: Access | str) -> dict[str, Any]:
    """The ``openapi_extra`` that declares a route's level."""
    return {KEY: Access(access).value}


def declared(method: str, path: str, openapi_extra: dict[str, Any] | None) -> Access | None:
    """The level a route declares, or None where it declares none."""
    if openapi_extra and KEY in openapi_extra:
        return Access(openapi_extra[KEY])
    return PLAIN_ROUTES.get((method, path))
