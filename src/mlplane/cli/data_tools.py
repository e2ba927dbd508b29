"""``mlplane data diff | lineage | leakage | sql | sample`` and ``mlplane gc``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table
from rich.text import Text

from mlplane.cli._common import (
    JsonOption,
    cells,
    client,
    console,
    fmt_number,
    fmt_size,
    fmt_time,
    info,
    print_json,
)
from mlplane.cli.data import ProjectOption, app
from mlplane.errors import InvalidInput

if TYPE_CHECKING:
    from mlplane.datasets.diff import VersionDiff


def _num(x: float | None) -> str:
    return "" if x is None else fmt_number(x)


def _print_diff(d: VersionDiff) -> None:
    info(
        f"{d.before} -> {d.after}: {len(d.added)} added, {len(d.removed)} removed, "
        f"{len(d.changed)} changed, {d.unchanged} unchanged files; "
        f"{fmt_size(d.size_before)} -> {fmt_size(d.size_after)}"
    )
    if d.added or d.removed or d.changed:
        files = Table(title="Files", title_justify="left")
        files.add_column("Change")
        files.add_column("Path")
        for kind, paths in (("added", d.added), ("removed", d.removed), ("changed", d.changed)):
            for p in paths:
                files.add_row(kind, p)
        console().print(files)
    for t in d.tables:
        delta = t.rows_after - t.rows_before
        table = Table(
            title=f"{t.path}: rows {t.rows_before:,} -> {t.rows_after:,} ({delta:+,})",
            title_justify="left",
        )
        for head in ("Column", "Change", "Before", "After", "Shifts", "PSI"):
            table.add_column(head, justify="right" if head == "PSI" else "left")
        for c in t.columns:
            shifts = "; ".join(f"{k} {_num(a)} -> {_num(b)}" for k, (a, b) in c.shifts.items())
            psi = Text(_num(c.psi), style="red" if c.drifted else "")
            table.add_row(*cells(c.column, c.change, c.before or "", c.after or "", shifts), psi)
        if not t.columns:
            table.add_row("(no column changed)", "", "", "", "", "")
        console().print(table)


@app.command("diff")
def diff(
    ctx: typer.Context,
    before: str = typer.Argument(..., help="The older version, e.g. transactions@2"),
    after: str = typer.Argument(..., help="The newer version, e.g. transactions@3"),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Files, schema, row counts and per-column shifts between two versions."""
    from mlplane.datasets.diff import diff_versions

    t = client(ctx).transport
    d = diff_versions(t.get_dataset(before, project=project), t.get_dataset(after, project=project))
    if as_json:
        print_json(d)
        return
    _print_diff(d)


@app.command("lineage")
def lineage(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name@version"),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Where a version came from, and the runs and versions made from it."""
    lin = client(ctx).transport.dataset_lineage(ref, project=project)
    if as_json:
        print_json(lin)
        return
    v = lin.version
    info(f"{v.ref} ({v.digest[:15]}, {fmt_size(v.size)}, by {v.created_by})")
    info(f"  upstream: {lin.derived_from or 'added from files'}")
    info(f"  derived versions: {', '.join(lin.derived) or 'none'}")
    runs = Table(title=f"Runs that read {v.ref}", title_justify="left")
    for head in ("Run", "Name", "Experiment", "Status", "Started", "Context", "PII allowed"):
        runs.add_column(head)
    for r in lin.runs:
        runs.add_row(
            *cells(
                r.run_id,
                r.run_name,
                r.experiment_id,
                r.status,
                fmt_time(r.start_time),
                r.context,
                "yes" if r.unhandled_pii else "",
            )
        )
    if not lin.runs:
        runs.add_row("(none yet)", "", "", "", "", "", "")
    console().print(runs)
    info(f"  models: {', '.join(lin.models) or 'none registered from it'}")


@app.command("leakage")
def leakage(
    ctx: typer.Context,
    train: str = typer.Argument(..., help="Training split, e.g. train@1"),
    test: str = typer.Argument(..., help="Test split, e.g. test@1"),
    key: list[str] = typer.Option(
        [], "--key", "-k", help="Key column(s) to compare; default: whole rows."
    ),
    target: str | None = typer.Option(None, "--target", "-t", help="Target column."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Rows in both splits and features suspiciously predictive of the target."""
    from mlplane import data

    client(ctx)  # the same store as the other commands
    report = data.leakage(train, test, key=key or None, target=target, project=project)
    if as_json:
        print_json(report)
        return
    o = report.overlap
    style = "red" if o.in_both else "green"
    info(
        Text(
            f"{o.in_both:,} of {o.test_rows:,} test rows ({o.fraction:.2%}) also in train, "
            f"by {', '.join(o.by) or 'whole rows'}"
            + (f"; example test rows: {', '.join(map(str, o.examples[:5]))}" if o.examples else ""),
            style=style,
        )
    )
    info(f"duplicates inside train: {o.duplicates_train:,}, inside test: {o.duplicates_test:,}")
    if report.target is None:
        info("no target column: name one with --target to score features")
    else:
        table = Table(title=f"Single-feature power for {report.target}", title_justify="left")
        for head in ("Feature", "Metric", "Score", "Suspicious"):
            table.add_column(head, justify="right" if head == "Score" else "left")
        for f in report.features:
            flag = Text("LEAK?", style="red") if f.suspicious else Text("")
            table.add_row(*cells(f.column, f.metric, f"{f.score:.4f}"), flag)
        console().print(table)
    for w in report.warnings:
        info(Text(w, style="yellow"))
    if report.leaky:
        raise typer.Exit(2)


@app.command("sql")
def sql(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="e.g. \"SELECT count(*) FROM 'transactions@3'\""),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the result to a .csv, .parquet or .jsonl file."
    ),
    limit: int = typer.Option(50, "--limit", help="Rows to print (not for --output)."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Query versions with DuckDB SQL; versions are named as 'name@version'."""
    from mlplane import data

    client(ctx)
    rel = data.sql_relation(query, project=project)
    if output is not None:
        fmt = {".csv": "csv", ".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(
            output.suffix.lower()
        )
        if fmt is None:
            raise InvalidInput(f"--output {output}: use a .csv, .parquet or .jsonl file name")
        tmp = output.with_name(f".{output.name}.part")
        try:
            if fmt == "csv":
                rel.write_csv(str(tmp))
            elif fmt == "parquet":
                rel.write_parquet(str(tmp))
            else:
                _write_jsonl(rel, tmp)
            tmp.replace(output)
        finally:
            tmp.unlink(missing_ok=True)
        info(f"wrote {output}")
        return
    table = rel.limit(limit + 1).to_arrow_table()
    rows = table.to_pylist()
    if as_json:
        print_json(rows[:limit])
        return
    out = Table(title_justify="left")
    for name in table.column_names:
        out.add_column(name)
    for row in rows[:limit]:
        out.add_row(*cells(*row.values()))
    console().print(out)
    if len(rows) > limit:
        info(f"(first {limit} rows; --limit N for more, or --output FILE for all)")


def _write_jsonl(rel: object, path: Path) -> None:
    import orjson

    reader = rel.to_arrow_reader(65_536)  # type: ignore[attr-defined]
    with open(path, "wb") as fh:
        for batch in reader:
            for row in batch.to_pylist():
                fh.write(orjson.dumps(row, default=str) + b"\n")


@app.command("sample")
def sample(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name@version to sample"),
    fraction: float = typer.Option(..., "--fraction", "-f", help="Share of rows, e.g. 0.01"),
    seed: int = typer.Option(0, "--seed", help="Same seed, same rows."),
    into: str | None = typer.Option(None, "--into", help="Dataset name (default NAME-sample)."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """A reproducible sample, stored as a version of its own dataset."""
    result = client(ctx).transport.sample_dataset(
        ref, fraction=fraction, seed=seed, into=into, project=project
    )
    if as_json:
        print_json(result)
        return
    v = result.version
    rows = sum(f.profile.rows for f in v.files if f.profile is not None)
    info(f"{v.ref}: {rows:,} rows sampled from {ref} (fraction {fraction}, seed {seed})")


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    try:
        if t[-1:] in units:
            return float(t[:-1]) * units[t[-1]]
        return float(t)
    except ValueError:
        raise InvalidInput(f"--grace {text!r}: use a duration like 30m, 24h or 7d") from None


def gc(
    ctx: typer.Context,
    grace: str | None = typer.Option(
        None, "--grace", help="Keep unreferenced data younger than this (default 24h)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report only; delete nothing."),
    as_json: bool = JsonOption,
) -> None:
    """Remove stored chunks and blobs that nothing references, and abandoned multipart
    uploads (see mlplane.gc)."""
    report = client(ctx).transport.collect_garbage(
        grace_s=_duration(grace) if grace is not None else None, dry_run=dry_run
    )
    if as_json:
        print_json(report)
        return
    verb = "would remove" if dry_run else "removed"
    info(
        f"{verb} {report.chunks_deleted:,} chunks ({fmt_size(report.chunk_bytes_freed)}) and "
        f"{report.blobs_deleted:,} orphan blobs; kept {report.referenced_chunks:,} referenced "
        f"and {report.kept_young:,} younger than the grace period ({report.grace_s:g} s)"
    )
    expired = "would expire" if dry_run else "expired"
    info(f"{expired} {report.uploads_expired:,} abandoned multipart uploads")
