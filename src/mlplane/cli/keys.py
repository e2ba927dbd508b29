"""``mlplane keys …``: list, rotate and retire master key versions.

Each command is one call into :class:`~mlplane.security.masterkeys.KeyService` on
the store this machine's settings name, as the local user acting as platform admin:
the key file lives where that store is, so a server (``--uri http…``) is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from mlplane.cli._common import (
    JsonOption,
    cells,
    console,
    fmt_time,
    info,
    jsonable,
    local_services,
    print_json,
)
from mlplane.security import local_admin
from mlplane.security.masterkeys import KeyService

if TYPE_CHECKING:
    pass

app = typer.Typer(no_args_is_help=True)


@contextmanager
def _keys(ctx: typer.Context) -> Iterator[KeyService]:
    with local_services(ctx, "master keys") as services:
        yield services.master_keys


@app.command("ls")
def keys_ls(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """List master key versions and how many secrets each wraps (see KeyService.versions)."""
    with _keys(ctx) as keys:
        found = keys.versions(local_admin())
    if as_json:
        print_json([{**jsonable(k), "total": k.total} for k in found])
        return
    table = Table(title="Master key versions", title_justify="left")
    for column in ("Version", "Current", "Created", "State", "Chunks", "Other keys"):
        table.add_column(column)
    for k in found:
        state_ = "retired " + fmt_time(k.retired_at) if k.retired_at else None
        table.add_row(
            *cells(
                k.version,
                "yes" if k.current else "",
                fmt_time(k.created_at) if k.created_at else None,
                state_ or ("available" if k.available else "MISSING"),
                k.wrapped.get("chunks", 0),
                k.total - k.wrapped.get("chunks", 0),
            )
        )
    console().print(table)


@app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    resume: bool = typer.Option(
        False, "--resume", help="Make no new version; finish re-wrapping after an interruption."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Make a new master key current and re-wrap every data key under it (see
    KeyService.rotate). Back up the key file afterwards."""
    with _keys(ctx) as keys:
        done = keys.rotate(local_admin(), resume=resume)
    if as_json:
        print_json(done)
        return
    what = ", ".join(f"{n} {kind}" for kind, n in done.rewrapped.items())
    verb = "Made" if done.created else "Kept"
    info(f"{verb} master key version {done.version} current; re-wrapped {what}.")
    info("Back up the key file now; retire old versions with: mlplane keys retire VERSION")


@app.command("retire")
def keys_retire(
    ctx: typer.Context,
    version: int = typer.Argument(..., help="The old version to delete for good."),
) -> None:
    """Delete an old master key version once nothing is wrapped under it (see
    KeyService.retire). Backups made before its rotation become unreadable."""
    with _keys(ctx) as keys:
        todo = keys.retire(local_admin(), version)
    info(todo or f"Retired master key version {version}.")


ShredOption = typer.Option(
    False,
    "--shred",
    help="Also destroy the data keys of chunks no other version uses: unreadable for good, "
    "backups of the blob store included (project admin role).",
)


def remove_version(ctx: typer.Context, kind: str, ref: str, project: str, shred: bool) -> None:
    """``data rm`` and ``models rm``: DataService / RegistryService.delete_version."""
    with local_services(ctx, "deleting versions") as services:
        service = services.data if kind == "data" else services.registry
        shredded = service.delete_version(local_admin(), ref, project=project, shred=shred)
    tail = f"; shredded {shredded} chunks" if shred else "; gc reclaims its chunks"
    info(f"Deleted {ref}{tail}.")
