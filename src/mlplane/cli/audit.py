"""``mlplane audit ls | export | verify | checkpoint``.

Each command is one call into :class:`~mlplane.security.audit.AuditService` on the
store this machine's settings name, as the local user acting as platform admin
(as ``mlplane users`` does): verification needs the master key, which only the
server's own machine holds.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import orjson
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
    print_error,
    print_json,
)
from mlplane.errors import InvalidInput
from mlplane.security import local_admin
from mlplane.security.audit import AuditService

app = typer.Typer(no_args_is_help=True)

SinceOption = typer.Option(
    None, "--since", help="Only events at or after this time (ISO 8601; local time if naive)."
)


@contextmanager
def _audit(ctx: typer.Context) -> Iterator[AuditService]:
    with local_services(ctx, "the audit log") as services:
        yield services.audit


def _since_ms(since: str | None) -> int | None:
    if since is None:
        return None
    try:
        return int(datetime.fromisoformat(since).timestamp() * 1000)
    except ValueError:
        raise InvalidInput(f"--since {since!r} is not an ISO 8601 time") from None


@app.command("ls")
def audit_ls(
    ctx: typer.Context,
    since: str | None = SinceOption,
    action: str | None = typer.Option(None, "--action", help="Only this action (run.create…)."),
    actor: str | None = typer.Option(None, "--actor", help="Only this user or service."),
    limit: int = typer.Option(50, "--limit", "-n", help="The newest N matching events."),
    as_json: bool = JsonOption,
) -> None:
    """List the newest audit events, oldest first (see AuditService.events)."""
    with _audit(ctx) as audit:
        found = audit.events(
            local_admin(), since_ms=_since_ms(since), action=action, actor=actor, limit=limit
        )
    if as_json:
        print_json(found)
        return
    if not found:
        info("No audit events match.")
        return
    table = Table(title="Audit events", title_justify="left")
    for column in ("Seq", "Time", "Actor", "Action", "Resource", "Outcome", "Source", "Details"):
        table.add_column(column)
    for e in found:
        details = orjson.dumps(e.details, option=orjson.OPT_SORT_KEYS).decode()
        table.add_row(
            *cells(
                e.seq, fmt_time(e.time), e.actor, e.action, e.resource, e.outcome, e.source, details
            )
        )
    console().print(table)


@app.command("export")
def audit_export(
    ctx: typer.Context,
    since: str | None = SinceOption,
    fmt: str = typer.Option("jsonl", "--format", help="Only jsonl: one event per line."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
) -> None:
    """Stream events (with their hashes) as JSON lines, oldest first."""
    if fmt != "jsonl":
        raise InvalidInput(f"--format {fmt!r} is not supported: use jsonl")
    with _audit(ctx) as audit:
        events = audit.export(local_admin(), since_ms=_since_ms(since))
        sink = open(out, "wb") if out is not None else sys.stdout.buffer  # noqa: SIM115
        try:
            for e in events:
                sink.write(orjson.dumps(jsonable(e)) + b"\n")
        finally:
            if out is not None:
                sink.close()
            else:
                sink.flush()


@app.command("verify")
def audit_verify(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Check every event's hash and link and every signed checkpoint; exit 1 if any fails."""
    with _audit(ctx) as audit:
        report = audit.verify(local_admin())
    if as_json:
        print_json(report)
    elif report.ok:
        info(
            f"The audit log verifies: {report.events} events, {report.checkpoints} signed "
            f"checkpoints, head {report.last_seq} {report.last_hash[:16]}…"
        )
    else:
        print_error(
            f"the audit log is NOT intact: first bad sequence {report.first_bad_seq}: "
            f"{report.problem} ({report.events} events verified before it)"
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command("checkpoint")
def audit_checkpoint(ctx: typer.Context, as_json: bool = JsonOption) -> None:
    """Sign the current head of the chain now (also done every 1,000 events)."""
    with _audit(ctx) as audit:
        made = audit.checkpoint(local_admin())
    if as_json:
        print_json(made)
        return
    info(f"Signed checkpoint at sequence {made.seq}: {made.hash} ({made.key_id}).")
