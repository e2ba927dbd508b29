"""API tokens: generation, hashing, lifetimes and what a scoped token may do.

A token is ``mlp_`` + 32 random bytes (URL-safe base64). Only its SHA-256 is
stored: with 256 bits of entropy there is nothing to brute-force, so a slow,
salted hash would only make every request slower.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from mlplane.errors import InvalidInput
from mlplane.security.access import ROLE_PERMISSIONS
from mlplane.security.principal import Principal

PREFIX = "mlp_"
_MAX_LEN = 128  # a real token is 47 characters; anything far longer is not worth hashing

ROLE_ORDER = ("predictor", "viewer", "contributor", "approver", "admin")
"""Project roles, listed from least to most (``predictor`` is apart: it may predict but
not read, so it is below ``viewer`` without being part of it; see :func:`lesser`)."""

SCOPE_ALIASES = {"read": "viewer", "write": "contributor"}
"""``read``/``write`` token scopes, as the role caps they mean."""

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_token(secret: str) -> bool:
    return secret.startswith(PREFIX) and len(secret) <= _MAX_LEN


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(6)


def check_role(role: str) -> str:
    """A project role name, or ``read``/``write`` as the role they mean."""
    role = SCOPE_ALIASES.get(role, role)
    if role not in ROLE_PERMISSIONS:
        raise InvalidInput(
            f"unknown role {role!r}: use one of {', '.join(ROLE_ORDER)} (or read, write)"
        )
    return role


def parse_duration_ms(text: str) -> int | None:
    """``90d``, ``12h``, ``30m``, ``2w`` in milliseconds; ``never`` is None."""
    text = text.strip().lower()
    if text == "never":
        return None
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise InvalidInput(
            f"invalid token lifetime {text!r}: use a number and a unit (30m, 12h, 90d, 2w) "
            "or 'never'"
        )
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def lesser(role: str, other: str) -> str | None:
    """The role holding no more than both: the one whose permissions are a subset of the
    other's; None when neither is (a viewer capped at predictor may neither read nor
    predict, so it keeps no role)."""
    mine, theirs = ROLE_PERMISSIONS.get(role), ROLE_PERMISSIONS.get(other)
    if mine is None or theirs is None:
        return None
    if mine <= theirs:
        return role
    return other if theirs <= mine else None


def _capped(role: str, cap: str | None) -> str | None:
    if cap is None:
        return role
    return lesser(role, SCOPE_ALIASES.get(cap, cap))


def scoped_principal(
    name: str,
    *,
    is_platform_admin: bool,
    roles: dict[str, str],
    project: str | None,
    role_cap: str | None,
    source: str,
    deployment: str | None = None,
) -> Principal:
    """What an identity may do through one token: its roles, narrowed by the token.

    The identity's roles are read at every request, so a revoked role takes effect at
    once, and a token can never hold more than its identity holds now. A platform
    admin's scoped token loses the platform-admin flag and becomes an ordinary role.
    """
    if deployment is not None:
        # A deployment token predicts on that deployment and does nothing else.
        narrowed = scoped_principal(
            name,
            is_platform_admin=is_platform_admin,
            roles=roles,
            project=project,
            role_cap="predictor",
            source=source,
        )
        return Principal(
            name,
            False,
            narrowed.roles,
            source=source,
            scoped=True,
            deployments=frozenset({deployment}),
        )
    if project is None and role_cap is None:
        return Principal(name, is_platform_admin, dict(roles), source=source)
    if is_platform_admin:
        base = {project or "*": "admin"}
    elif project is None:
        base = dict(roles)
    else:
        role = roles.get(project) or roles.get("*")
        base = {project: role} if role else {}
    capped = {p: c for p, r in base.items() if (c := _capped(r, role_cap)) is not None}
    return Principal(name, False, capped, source=source, scoped=True)
