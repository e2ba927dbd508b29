"""``mlplane predict``: batch inference with a registered model; see
:mod:`mlplane.serving.batch` for how it runs, resumes and what it writes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlplane.cli._common import (
    JsonOption,
    cells,
    client,
    console,
    err_console,
    fmt_number,
    print_json,
)
from mlplane.projects import DEFAULT_PROJECT

if TYPE_CHECKING:  # pandas and pyarrow load when the command runs, not with every command
    from mlplane.serving.batch import BatchResult, InputSource

DATA_PREFIX = "data:"


def predict(
    ctx: typer.Context,
    ref: str = typer.Argument(
        ..., help="The model version: NAME@ALIAS, NAME@VERSION or models:/NAME/VERSION."
    ),
    input_: str = typer.Option(
        ...,
        "--input",
        "-i",
        help="A Parquet, CSV or JSON Lines file or a folder of Parquet files (a path or an "
        "fsspec URL such as s3://bucket/key), or a dataset version as data:NAME@VERSION "
        "(or NAME@VERSION when no such path exists).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="The Parquet file to write."),
    executor: str = typer.Option("local", "--executor", help="local (processes here) or ray."),
    workers: int | None = typer.Option(
        None, "--workers", "-w", min=1, help="Worker processes. Default: the CPUs."
    ),
    address: str | None = typer.Option(
        None, "--ray-address", help="The Ray cluster for --executor ray. Default: a local Ray."
    ),
    batch_rows: int = typer.Option(
        65_536, "--batch-rows", min=1, help="Rows per model call and per part."
    ),
    passthrough: str = typer.Option(
        "", "--passthrough", help="Comma-separated input columns to copy into the output."
    ),
    proba: bool = typer.Option(
        False, "--proba", help="Add proba_<class> columns from the model's predict_proba."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output if it exists."),
    restart: bool = typer.Option(
        False, "--restart", help="Discard the parts of an earlier run with other input or model."
    ),
    project: str = typer.Option(DEFAULT_PROJECT, "--project", "-p", help="Project of the model."),
    as_json: bool = JsonOption,
) -> None:
    """Predict every row of a table with a registered model into a Parquet file.

    Parts are written as they finish; after a crash, the same command redoes only the
    missing ones.
    """
    from mlplane.serving.batch import ModelSource, predict_batch

    transport = client(ctx).transport
    version, folder, _ = transport.fetch_model(ref, project=project)
    model = ModelSource(Path(folder), version.ref, version.manifest_sha256)
    source = _source(ctx, input_, project)
    columns = [c.strip() for c in passthrough.split(",") if c.strip()]
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows"),
        TimeElapsedColumn(),
        console=err_console(),
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task(f"predicting with {version.ref}", total=None)
        result = predict_batch(
            model,
            source,
            output,
            executor=executor,
            workers=workers,
            address=address,
            batch_rows=batch_rows,
            passthrough=columns,
            proba=proba,
            overwrite=overwrite,
            restart=restart,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        print_json(result)
        return
    _summary(result)


def _source(ctx: typer.Context, spec: str, project: str) -> InputSource | str:
    """A path or URL as is; a dataset version as its files in the local version cache."""
    ref = None
    if spec.startswith(DATA_PREFIX):
        ref = spec[len(DATA_PREFIX) :]
    elif "@" in spec and "://" not in spec and not Path(spec).exists():
        ref = spec
    if ref is None:
        return spec
    from mlplane.datasets.localcache import VersionCache
    from mlplane.serving.batch import input_from_files

    c = client(ctx)
    version = c.transport.get_dataset(ref, project=project)
    cache = VersionCache(c.settings.home / "cache" / "datasets", c.settings.cache_max_bytes)
    root = cache.path(
        version.digest,
        lambda folder: c.transport.download_dataset(version.ref, folder, project=project),
        # The store checks and audits each read of unhandled PII: no cache hit skips it.
        refetch=version.pii_unhandled,
    )
    return input_from_files(
        [root / f.path for f in version.files],
        identity={"dataset": version.ref, "digest": version.digest},
        label=version.ref,
    )


def _summary(r: BatchResult) -> None:
    table = Table(title=f"Predicted with {r.model}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    resumed = f" ({r.parts_resumed} from an earlier run)" if r.parts_resumed else ""
    for row in (
        ("rows", f"{r.rows:,}"),
        ("parts", f"{r.parts}{resumed}"),
        ("rows/s", f"{r.rows_per_s:,.0f}"),
        ("seconds", fmt_number(round(r.seconds, 2))),
        ("executor", f"{r.executor}, {r.workers} workers"),
        ("columns", ", ".join(r.columns)),
        ("output", r.output),
    ):
        table.add_row(*cells(*row))
    console().print(table)
