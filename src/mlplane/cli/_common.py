"""What every command shares: the client, the consoles, JSON output and value formatting."""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.console import Console
from rich.text import Text

from mlplane._json import float_out
from mlplane.client import Client
from mlplane.errors import InvalidInput, MlplaneError, NotFound
from mlplane.projects import DEFAULT_PROJECT
from mlplane.tracking.entities import Experiment, ViewType

if TYPE_CHECKING:
    from mlplane.services import Services

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")

# Tables piped to a file or another program should not wrap at Rich's default 80 columns.
_PIPE_WIDTH = 200


class State:
    """Per-invocation state, hung on the root context: the ``--uri`` and a lazy client."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.uri) if self.uri else Client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            client.close()


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):  # only when a command runs without the root callback
        obj = ctx.find_root().obj = State(os.environ.get("MLPLANE_URI") or None)
    return obj


@contextmanager
def local_services(ctx: typer.Context, what: str) -> Iterator[Services]:
    """The services on this machine's store, for commands that only run beside the server's
    database and key file (identities, keys, the audit log); ``what`` names the task in
    the refusal of an http(s) ``--uri``."""
    from mlplane.config import load_settings

    uri = state(ctx).uri
    settings = load_settings(uri=uri) if uri else load_settings()
    if settings.is_remote:
        raise InvalidInput(
            f"{what}: managed on the server's own store only; run this where its database "
            "and master key are (MLPLANE_HOME or MLPLANE_DB_URL), without an http(s) --uri"
        )
    from mlplane.services import Services  # the whole stack: only for these commands

    services = Services.from_settings(settings)
    try:
        yield services
    finally:
        services.close()


def client(ctx: typer.Context) -> Client:
    return state(ctx).client


# -- consoles -------------------------------------------------------------------------------------


def console() -> Console:
    """A console on the current stdout (built per call: tests swap ``sys.stdout``)."""
    out = Console(highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(highlight=False, width=_PIPE_WIDTH)
    return out


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """``error: <message>`` in red on stderr; never wrapped, never read as markup."""
    err_console().print(Text.assemble(("error: ", "bold red"), (message, "red")), soft_wrap=True)


def info(message: str | Text) -> None:
    """A line for people, on stdout; text is printed as is (no Rich markup)."""
    console().print(message, soft_wrap=True, markup=False)


def cells(*values: object) -> list[Text]:
    """Table cells from user data: never parsed as Rich markup."""
    return [v if isinstance(v, Text) else Text("-" if v is None else str(v)) for v in values]


def fail(exc: MlplaneError) -> typer.Exit:
    print_error(str(exc))
    return typer.Exit(1)


# -- JSON -----------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Entities (dataclasses, named tuples, enums) as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float):
        return float_out(value)
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(jsonable(value), option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


# -- formatting -----------------------------------------------------------------------------------


def fmt_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(start_ms: int | None, end_ms: int | None) -> str:
    """Elapsed time, up to now for a run that has not ended."""
    if start_ms is None:
        return "-"
    end = end_ms if end_ms is not None else time.time_ns() // 1_000_000
    s = max(0.0, (end - start_ms) / 1000)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h {int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d {int(s % 86400 // 3600):02d}h"


def fmt_number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}"


def fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


STATUS_STYLES = {
    "RUNNING": "cyan",
    "SCHEDULED": "blue",
    "FINISHED": "green",
    "FAILED": "red",
    "KILLED": "yellow",
}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


# -- lookups --------------------------------------------------------------------------------------


def find_experiment(c: Client, ref: str, *, project: str = DEFAULT_PROJECT) -> Experiment:
    """An experiment by id (all digits) or else by name in ``project``."""
    if ref.isdigit():
        try:
            return c.get_experiment(ref)
        except NotFound:
            pass
    found = c.get_experiment_by_name(ref, project=project)
    if found is None:
        raise NotFound(f"no experiment with id or name {ref!r} in project {project!r}")
    return found


def resolve_run_id(c: Client, ref: str) -> str:
    """A full run id from a full id or a unique prefix of one (as ``runs ls`` shows them)."""
    ref = ref.strip().lower()
    if len(ref) == 32 or not ref or any(ch not in "0123456789abcdef" for ch in ref):
        return ref  # the service says what is wrong with it
    if len(ref) < 4:
        raise InvalidInput(f"run id prefix {ref!r} is too short: give at least 4 characters")
    ids = [e.experiment_id for e in c.list_experiments(view_type=ViewType.ALL)]
    page = (
        c.search_runs(
            ids, f"attributes.run_id LIKE '{ref}%'", view_type=ViewType.ALL, max_results=2
        )
        if ids
        else None
    )
    runs = page.runs if page is not None else []
    if not runs:
        raise NotFound(f"run {ref} does not exist (no run id starts with {ref!r})")
    if len(runs) > 1:
        raise InvalidInput(f"run id prefix {ref!r} is ambiguous: give more characters")
    return runs[0].info.run_id
