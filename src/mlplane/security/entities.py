"""The security domain's public nouns: identities and API tokens."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Identity:
    """A user or a service account.

    Attributes:
        name: unique; shown in audit events and as the owner of what it creates.
        kind: ``user`` or ``service``.
        is_platform_admin: may do anything in any project, and manage identities.
        disabled: its tokens stop working at once; nothing is deleted.
        roles: project name (``*``: every project) -> role.
    """

    name: str
    kind: str
    is_platform_admin: bool
    disabled: bool
    roles: dict[str, str]
    description: str
    created_at: int
    created_by: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is kept about an API token (never the token itself).

    Attributes:
        token_id: public id, for listing and revoking.
        identity: the name of the identity the token acts as.
        project: when set, the token works in this project only.
        role: when set, a cap on the identity's roles (``viewer`` for read-only).
        deployment: when set, the one deployment of ``project`` the token may call.
        expires_at, revoked_at, last_used_at: milliseconds since the epoch, or None.
    """

    token_id: str
    identity: str
    name: str
    project: str | None
    role: str | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None
    last_used_at: int | None
    deployment: str | None = None

    def state(self, now: int) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just created: ``secret`` is shown this once and never stored."""

    info: TokenInfo
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class MasterKeyVersion:
    """One master key version and what it protects.

    Attributes:
        version: its number; never reused, even once retired.
        created_at: ms since the epoch; None for a first key made before this was kept.
        current: new data keys are wrapped under it.
        retired_at: when its key bytes were deleted; None while it is available.
        available: whether the key provider holds its bytes (it can unwrap).
        wrapped: how many secrets are wrapped under it, by kind (``chunks``,
            ``signing_keys``, ``audit_keys``); shredded chunks are not counted.
    """

    version: int
    created_at: int | None
    current: bool
    retired_at: int | None
    available: bool
    wrapped: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.wrapped.values())


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation did: the current version and the secrets re-wrapped, by kind."""

    version: int
    created: bool
    rewrapped: dict[str, int] = field(default_factory=dict)
