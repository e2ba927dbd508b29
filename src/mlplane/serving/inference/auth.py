"""Who may call the inference routes: API tokens, checked without a database read per request.

With ``auth="token"`` every route but ``/v2/health/*``, ``/metrics``, ``/ping`` and
``/health`` needs an API token, as ``Authorization: Bearer <token>`` or as the password of
HTTP Basic (what MLflow clients send), authenticated by
:meth:`~mlplane.security.identities.IdentityService.authenticate`. A success is cached per
digest of the header for :data:`TTL_S` seconds, so **revoking a token, a role or an
identity takes effect on a worker within that TTL** (the server proper re-reads on every
request; an inference worker trades that for not reading the database on its hot path).
Failures are remembered for :data:`FAILED_TTL_S`, so a client hammering with a bad token
costs one read a second, not one per request. Calling a deployment needs
:func:`~mlplane.security.may_predict` on it (the ``predict`` permission in its project, and
the token's deployment scope); its metadata needs ``read``.

``auth="none"`` lets every loopback caller in as a platform admin and turns others away,
like the server's own ``auth = "none"``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from mlplane.errors import PermissionDenied, Unauthenticated
from mlplane.security import Permission, Principal, allowed, may_predict
from mlplane.security.network import is_loopback
from mlplane.server.auth import credential

TTL_S = 5.0
"""How long a successful authentication is reused (revocation delay on a worker)."""
FAILED_TTL_S = 1.0
MAX_ENTRIES = 10_000

_ANONYMOUS = Principal(name="anonymous", is_platform_admin=True, source="loopback")
_MISSING = (
    "authentication required: send an API token as 'Authorization: Bearer <token>' "
    "(MLPLANE_TOKEN, MLFLOW_TRACKING_TOKEN) or as the HTTP Basic password"
)


class Authenticator:
    """Turns a request's ``Authorization`` header into a :class:`Principal`, with a cache."""

    def __init__(self, identities: object, mode: str, *, ttl_s: float | None = None) -> None:
        if mode not in ("token", "none"):
            raise ValueError(f"auth must be 'token' or 'none', not {mode!r}")
        self.identities = identities
        self.mode = mode
        self.ttl_s = TTL_S if ttl_s is None else ttl_s
        self._ok: dict[bytes, tuple[Principal, float]] = {}
        self._failed: dict[bytes, tuple[Unauthenticated, float]] = {}
        self._loopback: dict[str, bool] = {}

    async def principal(self, scope: Any, header: bytes | None) -> Principal:
        """The caller; raises Unauthenticated (401) or, without auth, PermissionDenied."""
        if self.mode == "none":
            client = scope.get("client")
            host = str(client[0]) if isinstance(client, tuple | list) and client else ""
            ok = self._loopback.get(host)
            if ok is None:
                ok = self._loopback[host] = is_loopback(host) if host else True
            if not ok:
                raise PermissionDenied(
                    "this inference server runs without authentication (auth none) and "
                    "answers loopback clients only"
                )
            return _ANONYMOUS
        if header is None:
            raise Unauthenticated(_MISSING)
        key = hashlib.sha256(header).digest()
        now = time.monotonic()
        hit = self._ok.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        failed = self._failed.get(key)
        if failed is not None and failed[1] > now:
            raise failed[0]
        secret = credential(header.decode("latin-1"))
        if secret is None:
            raise Unauthenticated(_MISSING)
        client = scope.get("client")
        source = str(client[0]) if isinstance(client, tuple | list) and client else "unknown"
        try:
            p: Principal = await asyncio.to_thread(
                self.identities.authenticate,  # type: ignore[attr-defined]
                secret,
                source=source,
            )
        except Unauthenticated as exc:
            _put(self._failed, key, (exc, now + FAILED_TTL_S))
            raise
        _put(self._ok, key, (p, now + self.ttl_s))
        return p


def require_predict(p: Principal, project: str, deployment: str) -> None:
    if not may_predict(p, project, deployment):
        raise PermissionDenied(
            f"{p.name} may not call deployment {deployment!r}: it needs the 'predict' "
            f"permission on project {project!r} (the contributor role, or a token for it)"
        )


def require_read(p: Principal, project: str, deployment: str) -> None:
    if p.deployments is not None and deployment not in p.deployments:
        raise PermissionDenied(f"{p.name}'s token is not for deployment {deployment!r}")
    if not allowed(p, Permission.READ, project):
        raise PermissionDenied(
            f"{p.name} needs the 'read' permission on project {project!r} to see {deployment!r}"
        )


def _put(cache: dict[bytes, Any], key: bytes, value: Any) -> None:
    if len(cache) >= MAX_ENTRIES:
        cache.clear()  # bounded: a flood of distinct tokens cannot grow it
    cache[key] = value
