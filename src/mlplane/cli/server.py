"""``mlplane server``: uvicorn on :func:`mlplane.server.app.app_factory`."""

from __future__ import annotations

import enum
import os
from pathlib import Path

import typer

from mlplane.cli._common import info, print_error, state
from mlplane.config import load_settings
from mlplane.errors import InvalidInput
from mlplane.security.network import is_loopback
from mlplane.security.tls import check_pair

__all__ = ["LOOPBACK_ONLY", "is_loopback", "server", "tls_files"]

LOOPBACK_ONLY = (
    "--auth none lets every caller act as admin, so it binds only to loopback addresses "
    "(127.0.0.1, ::1, localhost); use token authentication (the default) to listen on others"
)


def tls_files(cert: Path | None, key: Path | None) -> tuple[str, str] | None:
    """The certificate and key to serve HTTPS with (see :func:`check_pair`)."""
    return check_pair(cert, key)


class AuthMode(enum.StrEnum):
    TOKEN = "token"
    NONE = "none"


class LogLevel(enum.StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"
    DEBUG = "debug"
    TRACE = "trace"


def server(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (loopback only with --auth none)."
    ),
    port: int = typer.Option(5000, "--port", min=1, max=65535, help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    log_level: LogLevel = typer.Option(
        LogLevel.INFO, "--log-level", case_sensitive=False, help="Server log level."
    ),
    auth: AuthMode | None = typer.Option(
        None,
        "--auth",
        help="'token' (API tokens; default, or MLPLANE_AUTH) or 'none' (everyone is admin; "
        "loopback only).",
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="PEM certificate (chain) to serve HTTPS with (MLPLANE_TLS_CERT)."
    ),
    tls_key: Path | None = typer.Option(
        None, "--tls-key", help="PEM private key of --tls-cert (MLPLANE_TLS_KEY)."
    ),
) -> None:
    """Run the REST server (API, MLflow-compatible API, health and metrics endpoints).

    Every route but /healthz, /readyz, /metrics, /health and /version needs an API token
    (``mlplane admin bootstrap`` makes the first one)."""
    settings = load_settings()
    mode = AuthMode(auth or settings.auth)
    if mode == AuthMode.NONE and not is_loopback(host):
        print_error(LOOPBACK_ONLY)
        raise typer.Exit(2)
    try:
        tls = tls_files(tls_cert or settings.tls_cert, tls_key or settings.tls_key)
    except InvalidInput as exc:
        print_error(exc.message)
        raise typer.Exit(2) from None
    # Each worker builds its app from the environment: hand the mode down that way.
    os.environ["MLPLANE_AUTH"] = mode.value
    import uvicorn

    uri = state(ctx).uri
    if uri and not uri.startswith(("http://", "https://")):
        # Each worker builds its app from the environment: hand the store down that way.
        os.environ["MLPLANE_URI"] = uri
    # Fail here, once, with "run mlplane db upgrade" rather than in every worker.
    from mlplane.services import Services  # the whole stack: only when serving

    services = Services.from_settings(load_settings())
    try:
        if mode == AuthMode.TOKEN and not services.identities.has_platform_admin():
            info("no platform admin yet: run `mlplane admin bootstrap` to create one and a token")
    finally:
        services.close()
    uvicorn.run(
        "mlplane.server.app:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level.value,
        loop="uvloop",
        http="httptools",
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
