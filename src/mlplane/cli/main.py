"""The ``mlplane`` command: the root callback, the sub-apps and the one error boundary.

Each command is one call into the SDK :class:`~mlplane.client.Client` (or, for
``server`` and ``db``, into the server and database modules); see their
docstrings for semantics.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from mlplane._version import __version__
from mlplane.cli import (
    _common,
    audit,
    data,
    data_tools,
    db,
    deploy,
    experiments,
    keys,
    models,
    predict,
    quickstart,
    runs,
    serve,
    server,
)
from mlplane.cli.identities import admin_app, tokens_app, users_app
from mlplane.cli.importers import app as import_app
from mlplane.errors import MlplaneError


class _Root(TyperGroup):
    """Turns expected errors into ``error: <message>`` and exit 1, for every command.

    This is the one place they are caught; it lives on the root command (not in
    :func:`main`) so that tests invoking the app see exactly what users see.
    """

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            try:
                return super().invoke(ctx)
            finally:
                obj = ctx.obj
                if isinstance(obj, _common.State):
                    obj.close()
        except MlplaneError as exc:
            raise _common.fail(exc) from None


app = typer.Typer(
    name="mlplane",
    cls=_Root,
    help="mlplane: the whole machine-learning lifecycle, self-hosted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mlplane {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    uri: str | None = typer.Option(
        None,
        "--uri",
        envvar="MLPLANE_URI",
        help="Store to use: a folder, sqlite:///… or postgresql://… (embedded), "
        "or http(s)://host:port (a server). Default: embedded under MLPLANE_HOME.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    ctx.obj = _common.State(uri or None)


app.add_typer(
    experiments.app, name="experiments", help="Create, list, delete and restore experiments."
)
app.add_typer(runs.app, name="runs", help="List, inspect, compare, delete and restore runs.")
app.add_typer(db.app, name="db", help="Manage the metadata database schema.")
app.add_typer(
    data.app,
    name="data",
    help="Versioned datasets: add (with quality gates and PII policies), list, show, diff, "
    "get, tag, lineage, leakage, sql, sample.",
)
app.add_typer(
    models.app,
    name="models",
    help="Model registry: ls, show, versions, promote, policy, card, lineage, scan, "
    "package, export, serve, keygen.",
)
app.add_typer(import_app, name="import", help="Import history from another tool (mlflow).")
app.add_typer(
    deploy.app,
    name="deploy",
    help="Deployments: create, canary, shadow, ab, status, rollback, history, ab-report.",
)
app.command("predict")(predict.predict)
app.command("gc")(data_tools.gc)
app.command("server")(server.server)
app.command("serve")(serve.serve)
app.command("quickstart")(quickstart.quickstart)
app.add_typer(
    users_app,
    name="users",
    help="Users and service accounts: create, ls, grant, revoke-role, disable.",
)
app.add_typer(tokens_app, name="tokens", help="API tokens: create, ls, revoke.")
app.add_typer(admin_app, name="admin", help="Set-up: bootstrap the first platform admin.")
app.add_typer(keys.app, name="keys", help="Master key versions: ls, rotate, retire.")
app.add_typer(
    audit.app, name="audit", help="The tamper-evident audit log: ls, export, verify, checkpoint."
)


def main() -> None:
    """Console-script entry point (``mlplane``)."""
    app(prog_name="mlplane")


if __name__ == "__main__":
    main()
