"""``mlplane import …``: bring another tool's history in (see :mod:`mlplane.importers`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from mlplane.cli._common import JsonOption, cells, client, console, err_console, info, print_json
from mlplane.projects import DEFAULT_PROJECT

if TYPE_CHECKING:  # the importer loads when the command runs, not with every command
    from mlplane.importers.mlflow import ImportReport, MlflowSource

app = typer.Typer(no_args_is_help=True)


@app.command("mlflow")
def mlflow(
    ctx: typer.Context,
    source: str = typer.Option(
        ...,
        "--from",
        help="An MLflow tracking server (http://host:5000), a file store folder (./mlruns) "
        "or MLflow's database (sqlite:///mlflow.db, postgresql://…).",
    ),
    artifacts_root: str | None = typer.Option(
        None,
        "--artifacts-root",
        help="Where the artifacts are when the store holds only their URIs: the folder an "
        "MLflow server stored them in (its --artifacts-destination).",
    ),
    experiment: list[str] = typer.Option(
        [],
        "--experiment",
        "-e",
        help="Import only this experiment (by name; repeatable), and the model versions its "
        "runs logged.",
    ),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", "-p", help="Project to import into."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Compare and count, write nothing."),
    token: str | None = typer.Option(
        None, "--token", envvar="MLFLOW_TRACKING_TOKEN", help="Bearer token for the server."
    ),
    user: str | None = typer.Option(None, "--user", envvar="MLFLOW_TRACKING_USERNAME"),
    password: str | None = typer.Option(
        None, "--password", envvar="MLFLOW_TRACKING_PASSWORD", hidden=True
    ),
    as_json: bool = JsonOption,
) -> None:
    """Import experiments, runs (metrics, params, tags, inputs, artifacts), registered models,
    versions and aliases. Run it again to resume: what was imported is skipped. Exits 1 when
    something failed (the summary lists what)."""
    from mlplane.importers.mlflow import MlflowImport, RestSource, open_source

    src: MlflowSource
    if source.startswith(("http://", "https://")):
        auth = (user, password or "") if user else None
        src = RestSource(source, token=token, auth=auth)
    else:
        src = open_source(source, artifacts_root=artifacts_root)
    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console(),
            transient=True,
            disable=as_json,
        ) as bar:
            task = bar.add_task(f"importing from {src.label}", total=None)

            def hook(event: str, item: str) -> None:
                if event in ("run", "skipped", "model_version"):
                    bar.advance(task)

            report = MlflowImport(
                client(ctx),
                src,
                project=project,
                experiments=experiment,
                dry_run=dry_run,
                hook=hook,
                on_total=lambda n: bar.update(task, total=n),
            ).run()
    finally:
        src.close()
    if as_json:
        print_json(report)
    else:
        _summary(report)
    if not report.ok:
        raise typer.Exit(1)


def _summary(report: ImportReport) -> None:
    from mlplane.importers.mlflow import KINDS

    verb = "would import" if report.dry_run else "imported"
    table = Table(title=f"MLflow import from {report.source}", title_justify="left")
    for head in ("What", verb.capitalize(), "Skipped", "Failed"):
        table.add_column(head, justify="left" if head == "What" else "right")
    for kind in KINDS:
        t = report.tallies[kind]
        if t.imported or t.skipped or t.failed:
            table.add_row(*cells(kind.replace("_", " "), t.imported, t.skipped, t.failed))
    console().print(table)
    for note in report.notes:
        info(f"note: {note}")
    for f in report.failures[:50]:
        info(f"failed: {f.kind} {f.item}: {f.reason}")
    if len(report.failures) > 50:
        info(f"... and {len(report.failures) - 50} more failures (--json lists them all)")
