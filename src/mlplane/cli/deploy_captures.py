"""``mlplane deploy captures``: a deployment's captured payloads, printed or written out.

See :func:`mlplane.serving.capture.read_captures`; the command is registered by
``cli/deploy.py``.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from mlplane.cli._common import JsonOption, cells, client, console, fmt_time, info, print_json
from mlplane.errors import InvalidInput
from mlplane.projects import DEFAULT_PROJECT

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_INPUTS_SHOWN = 3
_CELL = 40


def parse_since(text: str, *, now_ms: int | None = None) -> int:
    """``30m``, ``1h``, ``2d`` ago, or an ISO 8601 time (local time when it has no zone),
    as Unix ms."""
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    m = _DURATION.match(text)
    if m:
        return now - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1000)
    try:
        return int(datetime.fromisoformat(text.strip()).timestamp() * 1000)
    except ValueError:
        raise InvalidInput(
            f"--since {text!r} is neither a duration (30m, 1h, 2d) nor an ISO time "
            "(2025-01-31T14:00)"
        ) from None


def _services(ctx: typer.Context) -> tuple[Any, Any]:
    from mlplane.client.embedded import EmbeddedTransport

    transport = client(ctx).transport
    if not isinstance(transport, EmbeddedTransport):
        raise InvalidInput(
            "captures are read where the store is, for now: run this beside the server's "
            "database and blob store (MLPLANE_HOME or MLPLANE_DB_URL), without an http(s) --uri"
        )
    return transport.services, transport.principal


def _short(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def captures(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The deployment."),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", "-p", help="Its project."),
    since: str | None = typer.Option(
        None, "--since", help="Only rows from this long ago (30m, 1h, 2d) or this ISO time on."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write every matching row to a .parquet or .csv file."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many latest rows to print."),
    as_json: bool = JsonOption,
) -> None:
    """The captured requests and answers of a deployment (reading them is audited)."""
    from mlplane.serving.capture import read_captures

    since_ms = parse_since(since) if since else None
    suffix = out.suffix.lower() if out is not None else ""
    if out is not None and suffix not in (".parquet", ".pq", ".csv"):
        raise InvalidInput(f"--out {out}: name a .parquet or .csv file")
    services, principal = _services(ctx)
    table = read_captures(services, principal, name, project=project, since_ms=since_ms)
    if out is not None:
        _write(table, out, suffix)
        if as_json:
            print_json({"path": str(out), "rows": table.num_rows})
        else:
            info(f"wrote {table.num_rows} captured rows to {out}")
        return
    latest = table.slice(max(0, table.num_rows - limit))
    rows = _plain_rows(latest)
    if as_json:
        print_json(rows)
        return
    inputs = [c for c in latest.column_names if c.startswith("input.")]
    view = Table(title=f"Captures of {name} ({table.num_rows} rows)", title_justify="left")
    for head in ("Request", "Time", "Version", "Kind", "Latency ms", "Status", "Inputs", "Output"):
        view.add_column(head, justify="right" if head in ("Version", "Latency ms") else "left")
    for r in rows:
        shown = ", ".join(f"{c[6:]}={r[c]}" for c in inputs[:_INPUTS_SHOWN])
        if len(inputs) > _INPUTS_SHOWN:
            shown += ", …"
        latency = r["latency_ms"]
        view.add_row(
            *cells(
                r["request_id"],
                fmt_time(r["time"]),
                r["version"],
                r["kind"],
                f"{latency:.1f}" if latency is not None else None,
                r["status"],
                _short(shown),
                _short(r.get("output")),
            )
        )
    console().print(view)


def _plain_rows(table: Any) -> list[dict[str, Any]]:
    """Rows as dicts, the time as Unix ms."""
    import pyarrow as pa
    import pyarrow.compute as pc

    i = table.schema.get_field_index("time")
    table = table.set_column(i, "time", pc.cast(table["time"], pa.int64()))
    return list(table.to_pylist())


def _write(table: Any, out: Path, suffix: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, out)
    else:
        import pyarrow.parquet as pq

        pq.write_table(table, out, compression="zstd")
