"""``mlplane server``: uvicorn on :func:`mlplane.server.app.app_factory`."""

from __future__ import annotations

import enum
import ipaddress
import os

import typer

from mlplane.cli._common import print_error, state
from mlplane.config import load_settings

LOOPBACK_ONLY = (
    "auth is not configured yet; only loopback addresses are allowed (127.0.0.1, ::1, localhost)"
)


class AuthMode(enum.StrEnum):
    NONE = "none"


class LogLevel(enum.StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (loopback only for now)."
    ),
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    log_level: LogLevel = typer.Option(
        LogLevel.INFO, "--log-level", case_sensitive=False, help="Server log level."
    ),
    auth: AuthMode = typer.Option(
        AuthMode.NONE, "--auth", help="Authentication mode; only 'none' until auth arrives."
    ),
) -> None:
    """Run the REST server (API, MLflow-compatible API, health and metrics endpoints)."""
    if not is_loopback(host):
        print_error(LOOPBACK_ONLY)
        raise typer.Exit(2)
    import uvicorn

    uri = state(ctx).uri
    if uri and not uri.startswith(("http://", "https://")):
        # Each worker builds its app from the environment: hand the store down that way.
        os.environ["MLPLANE_URI"] = uri
    # Fail here, once, with "run mlplane db upgrade" rather than in every worker.
    from mlplane.services import Services  # the whole stack: only when serving

    Services.from_settings(load_settings()).close()
    uvicorn.run(
        "mlplane.server.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level.value,
        loop="uvloop",
        http="httptools",
    )
