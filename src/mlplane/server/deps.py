"""Request-scoped dependencies: the services and the calling principal."""

from __future__ import annotations

from fastapi import Request

from mlplane.errors import Unauthenticated
from mlplane.security import Principal
from mlplane.server.auth import SCOPE_KEY
from mlplane.services import Services


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def principal(request: Request) -> Principal:
    """The caller, as :class:`~mlplane.server.auth.AuthMiddleware` authenticated it
    (with ``auth = none``, an admin named ``anonymous``)."""
    found = request.scope.get(SCOPE_KEY)
    if not isinstance(found, Principal):
        raise Unauthenticated("authentication required")
    return found
