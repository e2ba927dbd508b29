"""Request-scoped dependencies: the services and the calling principal."""

from __future__ import annotations

from fastapi import Request

from mlplane.security import Principal
from mlplane.services import Services


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def principal(request: Request) -> Principal:
    """The caller. With ``--auth none`` (loopback only) every caller acts as admin;
    token authentication and roles arrive with the security issue, here."""
    client = request.client.host if request.client else "unknown"
    return Principal(name="anonymous", is_platform_admin=True, source=client)
