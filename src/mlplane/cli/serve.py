"""``mlplane serve``: the inference server over the deployments; see
:mod:`mlplane.serving.supervisor`."""

from __future__ import annotations

from pathlib import Path

import typer

from mlplane.cli._common import info, print_error, state
from mlplane.cli.server import AuthMode, LogLevel
from mlplane.config import load_settings
from mlplane.errors import InvalidInput

__all__ = ["serve"]


def serve(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (loopback only with --auth none)."
    ),
    port: int = typer.Option(
        8080, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes (at most)."),
    min_workers: int | None = typer.Option(
        None,
        "--min-workers",
        min=1,
        help="Worker processes at least; below --workers the pool scales on requests in "
        "flight. Default: --workers (no scaling).",
    ),
    deployment: list[str] | None = typer.Option(
        None,
        "--deployment",
        "-d",
        metavar="NAME",
        help="Host this deployment (repeat for several). Default: every deployment, "
        "including those created later.",
    ),
    auth: AuthMode | None = typer.Option(
        None,
        "--auth",
        help="'token' (API tokens; default, or MLPLANE_AUTH) or 'none' (every caller trusted; "
        "loopback only).",
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="PEM certificate (chain) to serve HTTPS with (MLPLANE_TLS_CERT)."
    ),
    tls_key: Path | None = typer.Option(
        None, "--tls-key", help="PEM private key of --tls-cert (MLPLANE_TLS_KEY)."
    ),
    log_level: LogLevel = typer.Option(
        LogLevel.INFO, "--log-level", case_sensitive=False, help="Log level."
    ),
) -> None:
    """Serve the deployments: Open Inference Protocol (/v2), /invocations and
    /api/v1/deployments/NAME/predict, with canary analysis, autoscaling and restarts.

    Runs until Ctrl-C or SIGTERM, then lets each worker finish what it holds."""
    from mlplane.serving.supervisor import prepare  # the whole stack: only when serving

    uri = state(ctx).uri
    settings = load_settings(uri=uri) if uri else load_settings()
    try:
        supervisor = prepare(
            host=host,
            port=port,
            workers=workers,
            min_workers=min_workers,
            deployments=deployment or None,
            auth=(auth or AuthMode(settings.auth)).value,
            tls_cert=tls_cert or settings.tls_cert,
            tls_key=tls_key or settings.tls_key,
            settings=settings,
            log_level=log_level.value,
        )
    except InvalidInput as exc:
        print_error(exc.message)
        raise typer.Exit(2) from None
    sizes = (
        f"{supervisor.workers} workers"
        if supervisor.min_workers == supervisor.workers
        else f"{supervisor.min_workers} to {supervisor.workers} workers (autoscaled)"
    )
    info(f"mlplane serve: listening on {supervisor.url} with {sizes}")
    if supervisor.hosted:
        for h in supervisor.hosted:
            info(f"  hosting {h.name} ({h.model_ref}, project {h.project})")
    if not deployment:
        info("  hosting every deployment; new ones are picked up as they are created")
    supervisor.run()
