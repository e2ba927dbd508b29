"""``mlplane quickstart``: :func:`mlplane.quickstart.run_quickstart` with a progress bar."""

from __future__ import annotations

import shlex
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlplane.cli._common import (
    JsonOption,
    cells,
    client,
    console,
    err_console,
    fmt_number,
    info,
    print_json,
    state,
)
from mlplane.quickstart import run_quickstart


def quickstart(
    ctx: typer.Context,
    experiment: str = typer.Option(
        "quickstart", "--experiment", "-e", help="Experiment to track into."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Train and track a few scikit-learn models, then show how to explore them."""
    c = client(ctx)
    # The bar goes to stderr, so stdout stays clean for --json.
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("loading data", total=None)

        def progress(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total)

        summary = run_quickstart(c, experiment=experiment, progress=progress)
    if as_json:
        print_json(summary)
        return
    console().print(_summary_table(summary))
    ranked = summary["runs"]
    uri = state(ctx).uri
    where = f" --uri {shlex.quote(uri)}" if uri else ""
    info("")
    info(
        f"Data:    {summary['dataset']} passed {summary['quality_checks']} quality checks; "
        f"mlplane{where} data show {summary['dataset']}"
    )
    model = summary["model"]
    info(
        f"Model:   {model['name']}@{model['alias']} is version {model['version']} "
        f"(scan {model['scan']}); mlplane{where} models card {model['name']}@{model['alias']}"
    )
    info(f"Browse:  mlplane{where} runs ls --experiment {shlex.quote(experiment)}")
    info(
        f"Compare: mlplane{where} runs compare {ranked[0]['run_id'][:8]} {ranked[1]['run_id'][:8]}"
    )
    info("Serve:   mlplane admin bootstrap  (once: an admin token), then mlplane server")
    if not uri:
        info(
            f"Look:    mlplane server --auth none, then open http://127.0.0.1:5000/ui/"
            f"experiments/{summary['experiment_id']}"
        )


def _summary_table(summary: dict[str, Any]) -> Table:
    main = summary["main_metric"]
    table = Table(
        title=f"Quickstart: {summary['dataset']} in experiment {summary['experiment']!r} "
        f"(id {summary['experiment_id']}), best {main} first",
        title_justify="left",
    )
    numeric = ("#", "accuracy", "f1", "roc_auc", "train s")
    for col in ("#", "Run ID", "Name", "Model", "accuracy", "f1", "roc_auc", "train s"):
        table.add_column(
            col,
            justify="right" if col in numeric else "left",
            style="bold" if col == main else None,
        )
    for rank, r in enumerate(summary["runs"], start=1):
        m = r["metrics"]
        table.add_row(
            *cells(
                rank,
                r["run_id"][:8],
                r["run_name"],
                r["model"],
                fmt_number(m["accuracy"]),
                fmt_number(m["f1"]),
                fmt_number(m["roc_auc"]),
                f"{m['train_time_s']:.2f}",
            )
        )
    return table
