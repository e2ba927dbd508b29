"""``mlplane db …``: the metadata schema, through :mod:`mlplane.db.migrate`."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from mlplane.cli._common import JsonOption, info, print_json, state
from mlplane.config import Settings, load_settings
from mlplane.db import Database
from mlplane.db.migrate import HEAD_REVISION, current_revision
from mlplane.db.migrate import upgrade as upgrade_db

app = typer.Typer(no_args_is_help=True)


def _settings(ctx: typer.Context) -> Settings:
    # An http(s) --uri names a server, not a database: the database is then the
    # one this machine's settings point at (MLPLANE_DB_URL or MLPLANE_HOME).
    uri = state(ctx).uri
    return load_settings(uri=uri) if uri else load_settings()


def _shown(db: Database) -> str:
    return make_url(db.url).render_as_string(hide_password=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Apply pending schema migrations (back up the database first)."""
    db = Database(_settings(ctx).resolved_db_url)
    try:
        before = current_revision(db)
        upgrade_db(db)
        after = current_revision(db)
    finally:
        db.dispose()
    if as_json:
        print_json({"database": _shown(db), "from": before, "to": after})
    elif before == after:
        info(f"{_shown(db)} is already at revision {after}.")
    else:
        info(f"Upgraded {_shown(db)} from {before or '(empty)'} to {after}.")


@app.command("current")
def current(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Show the database's schema revision and the one this mlplane needs."""
    db = Database(_settings(ctx).resolved_db_url)
    try:
        rev = current_revision(db)
    finally:
        db.dispose()
    if as_json:
        print_json(
            {
                "database": _shown(db),
                "current": rev,
                "head": HEAD_REVISION,
                "up_to_date": rev == HEAD_REVISION,
            }
        )
        return
    info(f"database: {_shown(db)}")
    info(f"current:  {rev or '(empty)'}")
    info(f"head:     {HEAD_REVISION}")
    if rev != HEAD_REVISION:
        info(
            "Run `mlplane db upgrade` to bring it up to date."
            if rev
            else "The schema is created on first use, or now with `mlplane db upgrade`."
        )
