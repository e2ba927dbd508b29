"""``mlplane runs …``: one :class:`~mlplane.client.Client` call (or a few reads) per command."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import typer
from rich.table import Table
from rich.text import Text

from mlplane.cli import _compare
from mlplane.cli._common import (
    JsonOption,
    cells,
    client,
    console,
    find_experiment,
    fmt_duration,
    fmt_number,
    fmt_size,
    fmt_time,
    info,
    print_json,
    resolve_run_id,
    status_text,
)
from mlplane.projects import DEFAULT_PROJECT
from mlplane.tracking.entities import TAG_NOTE, TAG_PREFIX_SYSTEM, Run, ViewType

app = typer.Typer(no_args_is_help=True)

MAX_DEFAULT_COLUMNS = 8
SYSTEM_METRIC_PREFIX = "system/"


@app.command("ls")
def ls(
    ctx: typer.Context,
    experiment: list[str] = typer.Option(
        [],
        "--experiment",
        "-e",
        metavar="NAME_OR_ID",
        help="Experiment to search; repeat for more. Default: every active experiment.",
    ),
    project: str = typer.Option(
        DEFAULT_PROJECT, "--project", "-p", help="Project of named experiments."
    ),
    filter_string: str = typer.Option(
        "",
        "--filter",
        "-f",
        help="Search filter, e.g. \"metrics.acc > 0.9 and params.model = 'rf'\".",
    ),
    order_by: list[str] = typer.Option(
        [], "--order-by", "-o", help='Sort key, e.g. "metrics.acc DESC"; repeat for more.'
    ),
    max_results: int = typer.Option(
        100, "--max-results", "-n", min=1, max=50_000, help="At most this many runs."
    ),
    param: list[str] = typer.Option([], "--param", help="Param column to show; repeat for more."),
    metric: list[str] = typer.Option(
        [], "--metric", help="Metric column to show; repeat for more."
    ),
    deleted: bool = typer.Option(False, "--deleted", help="Only deleted runs."),
    as_json: bool = JsonOption,
) -> None:
    """List runs as a table (see Client.search_runs for the filter and order syntax)."""
    c = client(ctx)
    view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    # Deleting an experiment deletes its runs: --deleted looks in deleted experiments too.
    exps = [find_experiment(c, ref, project=project) for ref in experiment] or c.list_experiments(
        view_type=ViewType.ALL if deleted else ViewType.ACTIVE_ONLY
    )
    runs: list[Run] = []
    more = False
    if exps:
        page = c.search_runs(
            [e.experiment_id for e in exps], filter_string, view, max_results, order_by or None
        )
        runs, more = page.runs, page.next_page_token is not None
    if as_json:
        print_json(runs)
        return
    if not runs:
        info(
            "No runs match."
            if exps
            else "No experiments yet: run `mlplane quickstart` to make some."
        )
        return
    names = {e.experiment_id: e.name for e in exps} if len(exps) > 1 else None
    metrics, params, hidden = _columns(runs, param, metric)
    console().print(_runs_table(runs, metrics, params, names))
    if more:
        info(f"Showing the first {len(runs)} runs; raise --max-results to see more.")
    if hidden:
        info(f"{hidden} more columns: pick them with --metric/--param, or use --json.")


def _columns(
    runs: Sequence[Run], params: list[str], metrics: list[str]
) -> tuple[list[str], list[str], int]:
    """Metric and param keys to show, and how many were left out.

    Default: the keys most runs have, metrics first, at most MAX_DEFAULT_COLUMNS
    in all, with a few places kept for params when there are some.
    """
    if params or metrics:
        return list(metrics), list(params), 0
    m_count = Counter(
        k for r in runs for k in r.data.metrics if not k.startswith(SYSTEM_METRIC_PREFIX)
    )
    p_count = Counter(k for r in runs for k in r.data.params)
    m_keys = sorted(m_count, key=lambda k: (-m_count[k], k))
    p_keys = sorted(p_count, key=lambda k: (-p_count[k], k))
    n_m = min(len(m_keys), max(MAX_DEFAULT_COLUMNS - len(p_keys), MAX_DEFAULT_COLUMNS // 2 + 1))
    n_p = min(len(p_keys), MAX_DEFAULT_COLUMNS - n_m)
    return m_keys[:n_m], p_keys[:n_p], len(m_keys) + len(p_keys) - n_m - n_p


def _runs_table(
    runs: Sequence[Run], metrics: list[str], params: list[str], exp_names: dict[str, str] | None
) -> Table:
    table = Table(title=f"Runs ({len(runs)})", title_justify="left")
    table.add_column("Run ID", style="bold", no_wrap=True)
    table.add_column("Name", no_wrap=True)
    if exp_names is not None:
        table.add_column("Experiment")
    table.add_column("Status", no_wrap=True)
    table.add_column("Start", no_wrap=True)
    table.add_column("Duration", justify="right", no_wrap=True)
    both = set(metrics) & set(params)
    for k in metrics:
        table.add_column(
            f"metrics.{k}" if k in both else k, justify="right", header_style="bold cyan"
        )
    for k in params:
        table.add_column(f"params.{k}" if k in both else k, header_style="bold magenta")
    for r in runs:
        i = r.info
        row: list[object] = [i.run_id[:8], i.run_name]
        if exp_names is not None:
            row.append(exp_names.get(i.experiment_id, i.experiment_id))
        row += [
            status_text(i.status),
            fmt_time(i.start_time),
            fmt_duration(i.start_time, i.end_time),
        ]
        row += [fmt_number(r.data.metrics.get(k)) for k in metrics]
        row += [r.data.params.get(k, "-") for k in params]
        table.add_row(*cells(*row))
    return table


@app.command("show")
def show(
    ctx: typer.Context,
    run_ref: str = typer.Argument(..., metavar="RUN_ID", help="Run id or a unique prefix of one."),
    system: bool = typer.Option(False, "--system", help="Also show mlplane.* system tags."),
    as_json: bool = JsonOption,
) -> None:
    """One run: info, params, latest metrics, tags, inputs and artifacts (see Client.get_run)."""
    c = client(ctx)
    run = c.get_run(resolve_run_id(c, run_ref))
    artifacts = c.list_artifacts(run.info.run_id, recursive=True)
    if as_json:
        print_json(
            {"info": run.info, "data": run.data, "inputs": run.inputs, "artifacts": artifacts}
        )
        return
    exp = c.get_experiment(run.info.experiment_id)
    out = console()
    i = run.info
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for label, value in (
        ("Run ID", i.run_id),
        ("Name", i.run_name),
        ("Experiment", f"{exp.name} (id {exp.experiment_id})"),
        ("Status", status_text(i.status)),
        ("Start", fmt_time(i.start_time)),
        ("End", fmt_time(i.end_time)),
        ("Duration", fmt_duration(i.start_time, i.end_time)),
        ("User", i.user_id),
        ("Parent run", i.parent_run_id or "-"),
        ("Lifecycle", i.lifecycle_stage),
        ("Artifact URI", i.artifact_uri),
    ):
        head.add_row(*cells(label, value))
    out.print(head)
    note = run.data.tags.get(TAG_NOTE)
    if note:
        out.print(Text.assemble(("Note: ", "bold"), note))
    out.print(_kv_table("Params", run.data.params.items()))
    out.print(
        _kv_table("Metrics (latest)", ((k, fmt_number(v)) for k, v in run.data.metrics.items()))
    )
    tags = {k: v for k, v in run.data.tags.items() if system or not k.startswith(TAG_PREFIX_SYSTEM)}
    hidden = len(run.data.tags) - len(tags)
    out.print(_kv_table("Tags", tags.items()))
    if hidden:
        info(f"({hidden} mlplane.* system tags hidden: --system shows them)")
    if run.inputs:
        inputs = Table(title="Inputs", title_justify="left")
        for col in ("Kind", "Name", "Version", "Digest", "Context", "Note"):
            inputs.add_column(col)
        for inp in run.inputs:
            note = "read despite unhandled PII (allowed)" if inp.allow_pii else ""
            inputs.add_row(
                *cells(inp.kind, inp.name, inp.version, inp.digest[:16], inp.context, note)
            )
        out.print(inputs)
    arts = Table(title="Artifacts", title_justify="left")
    arts.add_column("Path")
    arts.add_column("Size", justify="right")
    for a in artifacts:
        arts.add_row(*cells(a.path, fmt_size(a.size)))
    out.print(arts)


def _kv_table(title: str, items: object) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("Key", style="bold")
    table.add_column("Value", overflow="fold")
    for k, v in sorted(items):  # type: ignore[call-overload]
        table.add_row(*cells(k, v))
    return table


@app.command("compare")
def compare(
    ctx: typer.Context,
    run_refs: list[str] = typer.Argument(..., metavar="RUN_ID RUN_ID [RUN_ID...]"),
    system: bool = typer.Option(False, "--system", help="Also compare system/* metrics."),
    as_json: bool = JsonOption,
) -> None:
    """Params and metrics side by side, with metric deltas against the first run."""
    if len(run_refs) < 2:
        raise typer.BadParameter("give at least two run ids", param_hint="RUN_ID")
    c = client(ctx)
    runs = [c.get_run(resolve_run_id(c, ref)) for ref in run_refs]
    result = _compare.compare(runs, include_system=system)
    if as_json:
        print_json(result)
        return
    out = console()
    out.print(_compare.params_table(runs, result))
    out.print(_compare.metrics_table(runs, result))


@app.command("rm")
def rm(
    ctx: typer.Context,
    run_refs: list[str] = typer.Argument(..., metavar="RUN_ID..."),
    purge: bool = typer.Option(False, "--purge", help="Delete for good, with all that was logged."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before purging."),
) -> None:
    """Delete runs: restorable by default, for good with --purge (see Client.delete_run)."""
    c = client(ctx)
    ids = [resolve_run_id(c, ref) for ref in run_refs]
    if purge and not yes:
        typer.confirm(
            f"Permanently delete {len(ids)} run(s) and everything logged to them?", abort=True
        )
    for rid in ids:
        if purge:
            c.purge_run(rid)
            info(f"Purged run {rid}.")
        else:
            c.delete_run(rid)
            info(f"Deleted run {rid}.")
    if not purge:
        info("Undo with: mlplane runs restore " + " ".join(ids))


@app.command("restore")
def restore(
    ctx: typer.Context,
    run_refs: list[str] = typer.Argument(..., metavar="RUN_ID..."),
) -> None:
    """Restore deleted runs (see Client.restore_run)."""
    c = client(ctx)
    for ref in run_refs:
        rid = resolve_run_id(c, ref)
        c.restore_run(rid)
        info(f"Restored run {rid}.")
