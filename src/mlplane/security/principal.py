"""Who is calling: the identity every service method receives."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        name: user or service-account name, recorded in audit events and as run owner.
        is_platform_admin: may do anything in any project.
        roles: project name -> role (``viewer``, ``contributor``, ``approver``, ``admin``).
        source: where the call came from (``local``, a client address).
        scoped: authenticated with a token narrower than its identity (a project or a
            role cap); such a caller may not mint itself a broader token.
        deployments: when set, the only deployments the caller may call (a token made
            for one deployment); None: every deployment its roles allow.
    """

    name: str
    is_platform_admin: bool = False
    roles: dict[str, str] = field(default_factory=dict)
    source: str = "local"
    scoped: bool = False
    deployments: frozenset[str] | None = None


def local_admin(name: str | None = None) -> Principal:
    """The principal of the embedded SDK: the local user, acting as platform admin."""
    import getpass

    try:
        user = name or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = "local"
    return Principal(name=user, is_platform_admin=True, source="local")
