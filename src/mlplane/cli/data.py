"""``mlplane data …``: versioned datasets, one client call per command."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from mlplane.cli import _data_render as render
from mlplane.cli import keys as keys_cli
from mlplane.cli._common import (
    JsonOption,
    cells,
    client,
    console,
    err_console,
    fmt_number,
    fmt_size,
    fmt_time,
    info,
    print_json,
)
from mlplane.datasets.entities import DatasetVersion
from mlplane.projects import DEFAULT_PROJECT

app = typer.Typer(no_args_is_help=True)
ProjectOption = typer.Option(DEFAULT_PROJECT, "--project", "-p", help="Project of the dataset.")


def _versions_table(title: str, versions: list[DatasetVersion]) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("Dataset", "left"),
        ("Version", "right"),
        ("Files", "right"),
        ("Size", "right"),
        ("Tags", "left"),
        ("Created", "left"),
        ("By", "left"),
        ("Digest", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for v in versions:
        table.add_row(
            *cells(
                v.name,
                v.version,
                v.file_count,
                fmt_size(v.size),
                ", ".join(v.tags),
                fmt_time(v.created_at),
                v.created_by,
                v.digest[:15],
            )
        )
    return table


def _pii_option(values: list[str]) -> str | dict[str, str] | None:
    """``--pii mask`` (every column) and/or ``--pii email=hash`` (one column)."""
    if not values:
        return None
    columns: dict[str, str] = {}
    for v in values:
        col, eq, policy = v.partition("=")
        if eq:
            columns[col.strip()] = policy.strip()
        else:
            columns["*"] = v.strip()
    if list(columns) == ["*"]:
        return columns["*"]
    return columns


@app.command("add")
def add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Dataset name."),
    path: Path = typer.Argument(..., help="A file or a folder."),
    contract: Path | None = typer.Option(
        None, "--contract", "-c", help="Quality contract (YAML) the tables must pass."
    ),
    pii: list[str] = typer.Option(
        [],
        "--pii",
        help="PII policy: mask, hash, drop, block or allow for every column, or "
        "COLUMN=POLICY for one (repeatable). Default: detect and flag.",
    ),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Store a file or folder as the next version (see DataService.add)."""
    text = None
    if contract is not None:
        from mlplane.datasets.contracts import load_contract

        text = load_contract(contract).to_json()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console(),
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task(f"adding {name}", total=None)
        result = client(ctx).transport.add_dataset(
            name,
            path,
            project=project,
            progress=lambda n: bar.advance(task, n),
            contract=text,
            pii=_pii_option(pii),
            total=lambda n: bar.update(task, total=n or None),
            tables_only=not as_json,  # the summary below shows table files only
        )
    if as_json:
        print_json(result)
        return
    v = result.version
    if result.created:
        info(
            f"{v.ref}: {v.file_count} files, {fmt_size(v.size)}; read {fmt_size(result.bytes_in)}"
            f", stored {fmt_size(result.bytes_stored)} new (compressed, encrypted)"
        )
    else:
        info(f"{v.ref} already holds exactly this content: no new version")
    render.quality_and_pii(v, only_problems=True)


@app.command("ls")
def ls(ctx: typer.Context, project: str = ProjectOption, as_json: bool = JsonOption) -> None:
    """The newest version of every dataset."""
    versions = client(ctx).transport.list_datasets(project=project)
    if as_json:
        print_json(versions)
        return
    console().print(_versions_table("Datasets", versions))


@app.command("versions")
def versions(
    ctx: typer.Context, name: str, project: str = ProjectOption, as_json: bool = JsonOption
) -> None:
    """Every version of a dataset, newest first."""
    found = client(ctx).transport.dataset_versions(name, project=project)
    if as_json:
        print_json(found)
        return
    console().print(_versions_table(f"Versions of {name}", found))


@app.command("show")
def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name@3, name@latest or name@tag"),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """A version and its files."""
    v = client(ctx).transport.get_dataset(ref, project=project)
    if as_json:
        print_json(v)
        return
    console().print(_versions_table(v.ref, [v]))
    files = Table(title="Files", title_justify="left")
    files.add_column("Path")
    files.add_column("Size", justify="right")
    files.add_column("Digest")
    for f in v.files:
        files.add_row(*cells(f.path, fmt_size(f.size), f.digest[:15]))
    console().print(files)
    for f in v.files:
        if f.profile is None:
            continue
        cols = Table(title=f"{f.path}: {f.profile.rows:,} rows", title_justify="left")
        for head in ("Column", "Type", "Nulls", "Distinct", "Min", "Max", "Mean", "Top"):
            cols.add_column(head, justify="left" if head in ("Column", "Type", "Top") else "right")
        for c in f.profile.columns:
            top = ", ".join(f"{value} ({n})" for value, n in c.top[:3])
            mean = None if c.mean is None else fmt_number(c.mean)
            cols.add_row(*cells(c.name, c.type, c.nulls, c.distinct, c.min, c.max, mean, top))
        console().print(cols)
    if v.derived_from:
        info(f"derived from {v.derived_from}")
    render.quality_and_pii(v, only_problems=False)


@app.command("get")
def get(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="name, name@3, name@latest or name@tag"),
    dest: Path = typer.Argument(..., help="Folder to write the files into."),
    project: str = ProjectOption,
    as_json: bool = JsonOption,
) -> None:
    """Write a version's files into a folder (each file atomically)."""
    transport = client(ctx).transport
    version = transport.get_dataset(ref, project=project)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console(),
        transient=True,
        disable=as_json,
    ) as bar:
        task = bar.add_task(f"getting {version.ref}", total=version.size or None)
        out = transport.download_dataset(
            version.ref, dest, project=project, progress=lambda n: bar.advance(task, n)
        )
    if as_json:
        print_json({"version": version, "path": out})
        return
    info(f"{version.ref} ({version.file_count} files, {fmt_size(version.size)}) written to {out}")


@app.command("tag")
def tag(
    ctx: typer.Context,
    ref: str,
    tag_name: str = typer.Argument(..., metavar="TAG"),
    project: str = ProjectOption,
) -> None:
    """Point a tag (e.g. prod) at a version."""
    v = client(ctx).transport.tag_dataset(ref, tag_name, project=project)
    info(f"{v.name}@{tag_name} -> version {v.version}")


@app.command("rm")
def rm(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME@VERSION"),
    project: str = ProjectOption,
    shred: bool = keys_cli.ShredOption,
) -> None:
    """Delete a dataset version on this machine's store (see delete_version)."""
    keys_cli.remove_version(ctx, "data", ref, project, shred)
