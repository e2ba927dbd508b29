"""``mlplane experiments …``: one :class:`~mlplane.client.Client` call per command."""

from __future__ import annotations

import typer
from rich.table import Table

from mlplane.cli._common import (
    JsonOption,
    cells,
    client,
    console,
    find_experiment,
    fmt_time,
    info,
    print_json,
)
from mlplane.errors import InvalidInput
from mlplane.projects import DEFAULT_PROJECT
from mlplane.tracking.entities import ViewType

app = typer.Typer(no_args_is_help=True)

ProjectOption = typer.Option(DEFAULT_PROJECT, "--project", "-p", help="Project of the experiment.")


@app.command("ls")
def ls(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", "-a", help="Include deleted experiments."),
    deleted: bool = typer.Option(False, "--deleted", help="Only deleted experiments."),
    project: str | None = typer.Option(None, "--project", "-p", help="Only this project."),
    as_json: bool = JsonOption,
) -> None:
    """List experiments, newest first (see Client.search_experiments)."""
    if all_ and deleted:
        raise typer.BadParameter("use --all or --deleted, not both", param_hint="--all/--deleted")
    view = ViewType.ALL if all_ else ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    exps = client(ctx).list_experiments(view_type=view, project=project)
    if as_json:
        print_json(exps)
        return
    table = Table(title="Experiments", title_justify="left")
    table.add_column("ID", justify="right", style="bold")
    table.add_column("Name")
    table.add_column("Project")
    if view != ViewType.ACTIVE_ONLY:
        table.add_column("Stage")
    table.add_column("Created")
    table.add_column("Tags")
    table.add_column("Description", overflow="ellipsis", max_width=40)
    for e in exps:
        row = [e.experiment_id, e.name, e.project]
        if view != ViewType.ACTIVE_ONLY:
            row.append(e.lifecycle_stage)
        tags = ", ".join(
            f"{k}={v}" for k, v in sorted(e.tags.items()) if not k.startswith("mlplane.")
        )
        row += [fmt_time(e.creation_time), tags, e.description]
        table.add_row(*cells(*row))
    if exps:
        console().print(table)
    else:
        info("No experiments. Create one with: mlplane experiments create NAME")


def _parse_tags(items: list[str]) -> dict[str, str]:
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"tag {item!r} is not KEY=VALUE")
        tags[key.strip()] = value
    return tags


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Experiment name (unique within the project)."),
    project: str = ProjectOption,
    tag: list[str] = typer.Option([], "--tag", "-t", help="A KEY=VALUE tag; repeat for more."),
    description: str = typer.Option("", "--description", "-d", help="Free text."),
    as_json: bool = JsonOption,
) -> None:
    """Create an experiment (see Client.create_experiment)."""
    c = client(ctx)
    eid = c.create_experiment(name, project=project, tags=_parse_tags(tag), description=description)
    if as_json:
        print_json(c.get_experiment(eid))
    else:
        info(f"Created experiment {name!r} (id {eid}) in project {project!r}.")


@app.command("rm")
def rm(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="ID_OR_NAME", help="Experiment id or name."),
    project: str = ProjectOption,
) -> None:
    """Delete an experiment and its runs; restorable (see Client.delete_experiment)."""
    c = client(ctx)
    exp = find_experiment(c, ref, project=project)
    c.delete_experiment(exp.experiment_id)
    info(
        f"Deleted experiment {exp.name!r} (id {exp.experiment_id}). "
        f"Undo with: mlplane experiments restore {exp.experiment_id}"
    )


@app.command("restore")
def restore(
    ctx: typer.Context,
    ref: str = typer.Argument(..., metavar="ID", help="Experiment id (or name)."),
    project: str = ProjectOption,
) -> None:
    """Restore a deleted experiment and its runs (see Client.restore_experiment)."""
    c = client(ctx)
    exp = find_experiment(c, ref, project=project)
    c.restore_experiment(exp.experiment_id)
    info(f"Restored experiment {exp.name!r} (id {exp.experiment_id}).")
