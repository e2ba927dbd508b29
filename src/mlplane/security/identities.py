"""Identities, project roles and API tokens: who may call, and with what rights.

Platform admins manage identities and roles (a project admin may grant roles in
that project); anyone may mint, list and revoke their own tokens. Every change is
audited; token secrets never reach the database, the audit log or an error message.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mlplane.db.engine import Database, now_ms
from mlplane.errors import AlreadyExists, InvalidInput, NotFound, Unauthenticated
from mlplane.security import tokens
from mlplane.security.access import Guard, Permission
from mlplane.security.entities import Identity, NewToken, TokenInfo
from mlplane.security.principal import Principal
from mlplane.security.tables import ApiTokenRow, IdentityRoleRow, IdentityRow

KINDS = ("user", "service")
DEFAULT_TOKEN_LIFETIME_MS = 90 * 86_400_000
LAST_USED_RESOLUTION_MS = 60_000
"""``last_used_at`` is written at most this often per token: not a write per request."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,254}$")


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(
            f"invalid identity name {name!r}: use letters, digits and . _ @ + - "
            "(starting with a letter or digit, at most 255 characters)"
        )
    return name


def _check_project(project: str) -> str:
    if not project or len(project) > 255 or project != project.strip():
        raise InvalidInput(f"invalid project name {project!r}")
    return project


class IdentityService:
    """Use cases of identities and tokens; see the module docstring for the rules."""

    def __init__(self, db: Database, guard: Guard) -> None:
        self._db = db
        self._guard = guard

    # -- identities --------------------------------------------------------------------------

    def create_identity(
        self,
        p: Principal,
        name: str,
        *,
        kind: str = "user",
        platform_admin: bool = False,
        description: str = "",
    ) -> Identity:
        """Create a user or service account (platform admins only); it has no roles yet."""
        if kind not in KINDS:
            raise InvalidInput(f"unknown identity kind {kind!r}: use user or service")
        with self._guard.unit(write=True) as s:
            self._guard.require_platform_admin(
                p, action="create identities", resource=f"identity:{name}"
            )
            row = self._insert(s, p, _check_name(name), kind, platform_admin, description)
            return self._entity(s, row)

    def list_identities(self, p: Principal) -> list[Identity]:
        """Every identity, by name (platform admins only)."""
        with self._guard.unit(write=False) as s:
            self._guard.require_platform_admin(p, action="list identities", resource="identity:*")
            rows = s.scalars(select(IdentityRow).order_by(IdentityRow.name)).all()
            return [self._entity(s, row) for row in rows]

    def get_identity(self, p: Principal, name: str) -> Identity:
        """One identity: your own, or any for a platform admin."""
        with self._guard.unit(write=False) as s:
            if name != p.name:
                self._guard.require_platform_admin(
                    p, action="read identities", resource=f"identity:{name}"
                )
            return self._entity(s, self._row(s, name))

    def grant(self, p: Principal, name: str, project: str, role: str) -> Identity:
        """Give ``name`` ``role`` in ``project`` (``*``: every project), replacing its role
        there. Platform admins, or admins of ``project``, may grant."""
        role = tokens.check_role(role)
        project = _check_project(project)
        with self._guard.unit(write=True) as s:
            self._require_project_admin(p, project, f"grant roles in project {project!r}", name)
            row = self._row(s, name)
            existing = s.get(IdentityRoleRow, (row.id, project))
            if existing is None:
                s.add(IdentityRoleRow(identity_id=row.id, project=project, role=role))
            else:
                existing.role = role
            s.flush()
            self._guard.audit(
                s,
                p,
                "identity.grant",
                f"identity:{name}",
                None,
                details={"project": project, "role": role},
            )
            return self._entity(s, row)

    def revoke_role(self, p: Principal, name: str, project: str) -> Identity:
        """Take away ``name``'s role in ``project``; its tokens lose it at their next call."""
        with self._guard.unit(write=True) as s:
            self._require_project_admin(p, project, f"revoke roles in project {project!r}", name)
            row = self._row(s, name)
            gone = s.execute(
                delete(IdentityRoleRow).where(
                    IdentityRoleRow.identity_id == row.id, IdentityRoleRow.project == project
                )
            ).rowcount  # type: ignore[attr-defined]
            if not gone:
                raise NotFound(f"{name} has no role in project {project!r}")
            self._guard.audit(
                s,
                p,
                "identity.revoke_role",
                f"identity:{name}",
                None,
                details={"project": project},
            )
            return self._entity(s, row)

    def set_disabled(self, p: Principal, name: str, *, disabled: bool = True) -> Identity:
        """Disable (or re-enable) an identity; a disabled identity's tokens stop at once."""
        with self._guard.unit(write=True) as s:
            self._guard.require_platform_admin(
                p, action="disable identities", resource=f"identity:{name}"
            )
            if disabled and name == p.name:
                raise InvalidInput("you cannot disable yourself: ask another platform admin")
            row = self._row(s, name)
            row.disabled = disabled
            s.flush()
            action = "identity.disable" if disabled else "identity.enable"
            self._guard.audit(s, p, action, f"identity:{name}", None)
            return self._entity(s, row)

    def bootstrap(
        self,
        p: Principal,
        name: str = "admin",
        *,
        expires_in_ms: int | None = DEFAULT_TOKEN_LIFETIME_MS,
    ) -> NewToken:
        """Create the first platform admin and a token for it; refused once an enabled
        platform admin exists (mint more tokens with :meth:`create_token` then)."""
        with self._guard.unit(write=True) as s:
            self._guard.require_platform_admin(p, action="bootstrap", resource="identity:*")
            if self._has_platform_admin(s):
                raise AlreadyExists(
                    "a platform admin exists already: bootstrap runs once; use "
                    "`mlplane tokens create <admin>` to mint another token"
                )
            row = self._insert(s, p, _check_name(name), "user", True, "first platform admin")
            return self._mint(s, p, row, "bootstrap", None, None, expires_in_ms)

    def has_platform_admin(self) -> bool:
        """Whether anyone can log in yet (the server's start-up hint; reveals nothing else)."""
        with self._db.read() as s:
            return self._has_platform_admin(s)

    # -- tokens ------------------------------------------------------------------------------

    def create_token(
        self,
        p: Principal,
        identity: str | None = None,
        *,
        name: str = "",
        project: str | None = None,
        role: str | None = None,
        expires_in_ms: int | None = DEFAULT_TOKEN_LIFETIME_MS,
        deployment: str | None = None,
    ) -> NewToken:
        """Mint a token for ``identity`` (default: yourself), optionally narrowed to one
        project and a role cap (``read``/``viewer`` for read-only), or to calling one
        deployment of ``project`` (``deployment``: the predictor role there, nothing
        else). The secret is in the result only. Platform admins may mint for anyone."""
        cap = tokens.check_role(role) if role is not None else None
        if deployment is not None:
            if project is None:
                raise InvalidInput("a deployment token needs the deployment's --project")
            if cap not in (None, "predictor"):
                raise InvalidInput("a deployment token only predicts: leave out --role")
            cap = "predictor"
        if project is not None:
            _check_project(project)
        if expires_in_ms is not None and expires_in_ms <= 0:
            raise InvalidInput("a token's lifetime must be positive")
        target = identity or p.name
        with self._guard.unit(write=True) as s:
            if target != p.name or p.scoped:
                # A scoped token must not mint a broader one for its own identity.
                self._guard.require_platform_admin(
                    p, action="create tokens for others", resource=f"identity:{target}"
                )
            row = self._row(s, target)
            if row.disabled:
                raise InvalidInput(f"{target} is disabled: enable it before minting tokens")
            return self._mint(s, p, row, name, project, cap, expires_in_ms, deployment)

    def list_tokens(self, p: Principal, identity: str | None = None) -> list[TokenInfo]:
        """Tokens of ``identity``; without one, your own (every token for a platform admin)."""
        with self._guard.unit(write=False) as s:
            stmt = select(ApiTokenRow, IdentityRow.name).join(
                IdentityRow, IdentityRow.id == ApiTokenRow.identity_id
            )
            if identity is not None and identity != p.name:
                self._guard.require_platform_admin(
                    p, action="list others' tokens", resource=f"identity:{identity}"
                )
            if identity is not None or not p.is_platform_admin:
                stmt = stmt.where(IdentityRow.name == (identity or p.name))
            rows = s.execute(stmt.order_by(ApiTokenRow.created_at, ApiTokenRow.id)).all()
            return [_token_info(t, owner) for t, owner in rows]

    def revoke_token(self, p: Principal, token_id: str) -> TokenInfo:
        """Revoke a token now (yours, or any for a platform admin); revoking twice is a no-op."""
        with self._guard.unit(write=True) as s:
            found = s.execute(
                select(ApiTokenRow, IdentityRow.name)
                .join(IdentityRow, IdentityRow.id == ApiTokenRow.identity_id)
                .where(ApiTokenRow.id == token_id)
            ).first()
            if found is None or (found[1] != p.name and not p.is_platform_admin):
                # Someone else's token id is as unknown to you as a made-up one.
                raise NotFound(f"no token {token_id!r}")
            token, owner = found
            if token.revoked_at is None:
                token.revoked_at = now_ms()
                s.flush()
                self._guard.audit(s, p, "token.revoke", f"token:{token.id}", None)
            return _token_info(token, owner)

    def authenticate(self, secret: str, *, source: str) -> Principal:
        """The principal a token acts as, with its identity's current roles narrowed by
        the token's scope. Raises :class:`Unauthenticated` for anything else."""
        if not tokens.looks_like_token(secret):
            raise Unauthenticated("invalid API token")
        now = now_ms()
        with self._db.read() as s:
            found = s.execute(
                select(ApiTokenRow, IdentityRow)
                .join(IdentityRow, IdentityRow.id == ApiTokenRow.identity_id)
                .where(ApiTokenRow.token_sha256 == tokens.digest(secret))
            ).first()
            if found is None:
                raise Unauthenticated("invalid API token")
            token, who = found
            if token.revoked_at is not None:
                raise Unauthenticated("this API token was revoked")
            if token.expires_at is not None and token.expires_at <= now:
                raise Unauthenticated("this API token has expired")
            if who.disabled:
                raise Unauthenticated(f"{who.name} is disabled")
            principal = tokens.scoped_principal(
                who.name,
                is_platform_admin=who.is_platform_admin,
                roles=self._roles(s, who.id),
                project=token.project,
                role_cap=token.role_cap,
                source=source,
                deployment=token.deployment,
            )
            token_id, last_used = token.id, token.last_used_at
        if last_used is None or now - last_used >= LAST_USED_RESOLUTION_MS:
            with self._db.write() as w:
                stmt = update(ApiTokenRow).where(ApiTokenRow.id == token_id)
                w.execute(stmt.values(last_used_at=now))
        return principal

    def principal_now(self, snapshot: Principal) -> Principal | None:
        """``snapshot`` (a principal recorded earlier) as far as it still holds: for what is
        done later on someone's behalf (a canary promotion). Roles are the lesser of the
        recorded and the current one per project; a disabled or deleted identity holds
        nothing. A principal that never had an identity here (the local user of an
        embedded store) is returned as recorded: it acted with the store's own access."""
        with self._db.read() as s:
            row = s.scalar(select(IdentityRow).where(IdentityRow.name == snapshot.name))
            if row is None:
                return snapshot if snapshot.source == "local" else None
            if row.disabled:
                return None
            current = self._roles(s, row.id)
            platform_admin = row.is_platform_admin
        roles: dict[str, str] = {}
        for project, role in snapshot.roles.items():
            now_role = current.get(project) or current.get("*")
            if platform_admin and not snapshot.scoped:
                now_role = "admin"
            kept = tokens.lesser(role, now_role) if now_role is not None else None
            if kept is not None:
                roles[project] = kept
        return Principal(
            snapshot.name,
            snapshot.is_platform_admin and platform_admin,
            roles,
            source=snapshot.source,
            scoped=True,
        )

    # -- plumbing ----------------------------------------------------------------------------

    def _require_project_admin(self, p: Principal, project: str, action: str, name: str) -> None:
        if project == "*":
            self._guard.require_platform_admin(p, action=action, resource=f"identity:{name}")
        else:
            self._guard.require(
                p,
                Permission.ADMIN,
                project=project,
                project_id=None,
                action=action,
                resource=f"identity:{name}",
            )

    def _insert(
        self, s: Session, p: Principal, name: str, kind: str, admin: bool, description: str
    ) -> IdentityRow:
        if s.scalar(select(IdentityRow.id).where(IdentityRow.name == name)) is not None:
            raise AlreadyExists(f"identity {name!r} exists already")
        row = IdentityRow(
            name=name,
            kind=kind,
            description=description,
            is_platform_admin=admin,
            disabled=False,
            created_at=now_ms(),
            created_by=p.name,
        )
        s.add(row)
        s.flush()
        details = {"kind": kind, "platform_admin": admin}
        self._guard.audit(s, p, "identity.create", f"identity:{name}", None, details=details)
        return row

    def _mint(
        self,
        s: Session,
        p: Principal,
        row: IdentityRow,
        name: str,
        project: str | None,
        cap: str | None,
        expires_in_ms: int | None,
        deployment: str | None = None,
    ) -> NewToken:
        secret, now = tokens.new_secret(), now_ms()
        token = ApiTokenRow(
            id=tokens.new_token_id(),
            identity_id=row.id,
            name=name,
            token_sha256=tokens.digest(secret),
            project=project,
            role_cap=cap,
            deployment=deployment,
            created_at=now,
            expires_at=None if expires_in_ms is None else now + expires_in_ms,
        )
        s.add(token)
        s.flush()
        details = {"identity": row.name, "project": project, "role": cap}
        if deployment is not None:
            details["deployment"] = deployment
        self._guard.audit(s, p, "token.create", f"token:{token.id}", None, details=details)
        return NewToken(info=_token_info(token, row.name), secret=secret)

    @staticmethod
    def _has_platform_admin(s: Session) -> bool:
        stmt = select(IdentityRow.id).where(
            IdentityRow.is_platform_admin.is_(True), IdentityRow.disabled.is_(False)
        )
        return s.scalar(stmt.limit(1)) is not None

    @staticmethod
    def _row(s: Session, name: str) -> IdentityRow:
        row = s.scalar(select(IdentityRow).where(IdentityRow.name == name))
        if row is None:
            raise NotFound(f"no identity named {name!r}")
        return row

    @staticmethod
    def _roles(s: Session, identity_id: int) -> dict[str, str]:
        rows = s.execute(
            select(IdentityRoleRow.project, IdentityRoleRow.role).where(
                IdentityRoleRow.identity_id == identity_id
            )
        ).all()
        return {project: role for project, role in rows}

    def _entity(self, s: Session, row: IdentityRow) -> Identity:
        return Identity(
            name=row.name,
            kind=row.kind,
            is_platform_admin=row.is_platform_admin,
            disabled=row.disabled,
            roles=self._roles(s, row.id),
            description=row.description,
            created_at=row.created_at,
            created_by=row.created_by,
        )


def _token_info(row: ApiTokenRow, owner: str) -> TokenInfo:
    return TokenInfo(
        token_id=row.id,
        identity=owner,
        name=row.name,
        project=row.project,
        role=row.role_cap,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        deployment=row.deployment,
    )
