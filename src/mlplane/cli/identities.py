"""``mlplane users …``, ``mlplane tokens …`` and ``mlplane admin bootstrap``.

Each command is one call into :class:`~mlplane.security.identities.IdentityService`
on the store this machine's settings name, as the local user acting as platform
admin (whoever can open the metadata database can change it anyway). Token
secrets are printed once, on stdout, and never again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.table import Table

from mlplane.cli._common import (
    JsonOption,
    cells,
    console,
    fmt_time,
    info,
    local_services,
    print_json,
)
from mlplane.db.engine import now_ms
from mlplane.security import local_admin
from mlplane.security.entities import Identity, NewToken, TokenInfo
from mlplane.security.identities import IdentityService
from mlplane.security.tokens import parse_duration_ms

users_app = typer.Typer(no_args_is_help=True)
tokens_app = typer.Typer(no_args_is_help=True)
admin_app = typer.Typer(no_args_is_help=True)

ExpiresOption = typer.Option("90d", "--expires", help="Lifetime: 30m, 12h, 90d, 2w, or 'never'.")


@contextmanager
def _identities(ctx: typer.Context) -> Iterator[IdentityService]:
    with local_services(ctx, "identities and tokens") as services:
        yield services.identities


# -- users ----------------------------------------------------------------------------------------


@users_app.command("create")
def users_create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Unique name (shown in audit events and as owner)."),
    service: bool = typer.Option(False, "--service", help="A service account, not a person."),
    platform_admin: bool = typer.Option(
        False, "--platform-admin", help="May do anything in any project and manage identities."
    ),
    description: str = typer.Option("", "--description", "-d", help="Free text."),
    as_json: bool = JsonOption,
) -> None:
    """Create a user or service account (see IdentityService.create_identity)."""
    with _identities(ctx) as ids:
        made = ids.create_identity(
            local_admin(),
            name,
            kind="service" if service else "user",
            platform_admin=platform_admin,
            description=description,
        )
    _show_identity(made, as_json, f"Created {made.kind} {made.name}.")


@users_app.command("ls")
def users_ls(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List users and service accounts with their roles."""
    with _identities(ctx) as ids:
        found = ids.list_identities(local_admin())
    if as_json:
        print_json(found)
        return
    if not found:
        info("No identities. Create the first admin with: mlplane admin bootstrap")
        return
    table = Table(title="Identities", title_justify="left")
    for column in ("Name", "Kind", "Platform admin", "Disabled", "Roles", "Created", "By"):
        table.add_column(column)
    for i in found:
        table.add_row(
            *cells(
                i.name,
                i.kind,
                "yes" if i.is_platform_admin else "",
                "yes" if i.disabled else "",
                _roles(i),
                fmt_time(i.created_at),
                i.created_by,
            )
        )
    console().print(table)


@users_app.command("grant")
def users_grant(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The user or service account."),
    project: str = typer.Argument(..., help="Project name, or '*' for every project."),
    role: str = typer.Argument(..., help="predictor, viewer, contributor, approver or admin."),
    as_json: bool = JsonOption,
) -> None:
    """Give an identity a role in a project (replacing its role there)."""
    with _identities(ctx) as ids:
        changed = ids.grant(local_admin(), name, project, role)
    _show_identity(changed, as_json, f"{name} is now {changed.roles[project]} in {project}.")


@users_app.command("revoke-role")
def users_revoke_role(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The user or service account."),
    project: str = typer.Argument(..., help="Project name, or '*'."),
    as_json: bool = JsonOption,
) -> None:
    """Take away an identity's role in a project; its tokens lose it at once."""
    with _identities(ctx) as ids:
        changed = ids.revoke_role(local_admin(), name, project)
    _show_identity(changed, as_json, f"{name} has no role in {project} any more.")


@users_app.command("disable")
def users_disable(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The user or service account."),
    enable: bool = typer.Option(False, "--enable", help="Enable it again instead."),
    as_json: bool = JsonOption,
) -> None:
    """Disable an identity: every token of it stops working at once."""
    with _identities(ctx) as ids:
        changed = ids.set_disabled(local_admin(), name, disabled=not enable)
    _show_identity(changed, as_json, f"{name} is {'enabled' if enable else 'disabled'}.")


def _roles(i: Identity) -> str:
    return ", ".join(f"{project}={role}" for project, role in sorted(i.roles.items()))


def _show_identity(i: Identity, as_json: bool, message: str) -> None:
    if as_json:
        print_json(i)
    else:
        info(message + (f" Roles: {_roles(i)}." if i.roles else ""))


# -- tokens ---------------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    identity: str = typer.Argument(..., help="The user or service account it acts as."),
    name: str = typer.Option("", "--name", "-n", help="What it is for (e.g. ci, laptop)."),
    project: str | None = typer.Option(None, "--project", "-p", help="Valid in this project only."),
    role: str | None = typer.Option(
        None,
        "--role",
        help="Cap its rights: predictor, viewer (or read), contributor (or write), approver.",
    ),
    expires: str = ExpiresOption,
    deployment: str | None = typer.Option(
        None, "--deployment", help="May only call this deployment of --project (predict)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Mint an API token; it is printed once (see IdentityService.create_token)."""
    lifetime = parse_duration_ms(expires)
    with _identities(ctx) as ids:
        made = ids.create_token(
            local_admin(),
            identity,
            name=name,
            project=project,
            role=role,
            expires_in_ms=lifetime,
            deployment=deployment,
        )
    _show_new_token(made, as_json)


@tokens_app.command("ls")
def tokens_ls(
    ctx: typer.Context,
    user: str | None = typer.Option(None, "--user", "-u", help="Only this identity's tokens."),
    as_json: bool = JsonOption,
) -> None:
    """List tokens (never their secrets): scope, expiry, last use, state."""
    with _identities(ctx) as ids:
        found = ids.list_tokens(local_admin(), user)
    now = now_ms()
    if as_json:
        print_json([{**_token_json(t), "state": t.state(now)} for t in found])
        return
    if not found:
        info("No tokens.")
        return
    table = Table(title="API tokens", title_justify="left")
    for column in ("ID", "Identity", "Name", "Project", "Role", "Expires", "Last used", "State"):
        table.add_column(column)
    for t in found:
        table.add_row(
            *cells(
                t.token_id,
                t.identity,
                t.name,
                t.project or "*" if not t.deployment else f"{t.project}/{t.deployment}",
                t.role or "(all)",
                fmt_time(t.expires_at) if t.expires_at else "never",
                fmt_time(t.last_used_at),
                t.state(now),
            )
        )
    console().print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token_id: str = typer.Argument(..., help="The token's ID, as `mlplane tokens ls` shows it."),
    as_json: bool = JsonOption,
) -> None:
    """Revoke a token; the next request with it is refused."""
    with _identities(ctx) as ids:
        revoked = ids.revoke_token(local_admin(), token_id)
    if as_json:
        print_json(_token_json(revoked))
    else:
        info(f"Revoked {revoked.token_id} ({revoked.identity}).")


def _token_json(t: TokenInfo) -> dict[str, object]:
    return {
        "token_id": t.token_id,
        "identity": t.identity,
        "name": t.name,
        "project": t.project,
        "role": t.role,
        "deployment": t.deployment,
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "last_used_at": t.last_used_at,
    }


def _show_new_token(made: NewToken, as_json: bool) -> None:
    if as_json:
        print_json({**_token_json(made.info), "token": made.secret})
        return
    t = made.info
    scope = f"project {t.project}" if t.project else "every project"
    if t.deployment:
        scope = f"deployment {t.deployment} of project {t.project}"
    expiry = fmt_time(t.expires_at) if t.expires_at else "never"
    info(
        f"Token {t.token_id} for {t.identity} ({scope}, role {t.role or 'all'}; expires {expiry}):"
    )
    info(made.secret)
    info("Store it now: it is not shown again. Use it as MLPLANE_TOKEN or MLFLOW_TRACKING_TOKEN.")


# -- admin ----------------------------------------------------------------------------------------


@admin_app.command("bootstrap")
def bootstrap(
    ctx: typer.Context,
    name: str = typer.Option("admin", "--name", help="Name of the first platform admin."),
    expires: str = ExpiresOption,
    as_json: bool = JsonOption,
) -> None:
    """Create the first platform admin and print its token once; refused once one exists."""
    lifetime = parse_duration_ms(expires)
    with _identities(ctx) as ids:
        made = ids.bootstrap(local_admin(), name, expires_in_ms=lifetime)
    _show_new_token(made, as_json)
