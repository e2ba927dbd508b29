"""``mlplane serve``: a supervisor process, its pool of inference workers, its control loop.

The process model:

* **Workers** (``multiprocessing`` *spawn*): each builds its own
  :class:`~mlplane.services.Services` and
  :func:`~mlplane.serving.inference.app.create_inference_app`, and runs uvicorn (uvloop,
  httptools) on its own socket bound to the same address with ``SO_REUSEPORT``, so the
  kernel spreads connections over the workers (see :mod:`mlplane.serving._workers`). Each
  response names its worker in the ``X-Mlplane-Worker`` header. A worker that dies is
  restarted after a backoff (0.5 s, doubling); five fast crashes in a row stop the server
  with an error. SIGTERM or SIGINT stops every worker gracefully (each finishes the
  requests it holds, for up to 30 s) and ``serve`` returns.
* **The control loop** (a thread of the supervisor) makes the canary checks that are due
  (:meth:`~mlplane.serving.service.DeploymentService.advance_rollouts`) every ``poll_s``
  and prunes traffic windows older than 7 days every minute. Errors are logged (once a
  minute while they repeat), never fatal. Several supervisors may run on one database: each
  check takes the rollout's row lock, so it is made once.
* **Autoscaling** on this host: the pool runs between ``min_workers`` and ``workers``
  processes, ``clamp(ceil(in flight / target), max(1, min_workers), workers)``, where *in
  flight* is the mean number of requests the workers held over the last second (shared
  memory, see :mod:`mlplane.serving._autoscale`) and *target* the smallest
  ``target_inflight`` of the hosted deployments. It grows at once and shrinks after 30 s
  below target; a new worker takes new connections as soon as it listens. Connections that
  are open stay with their worker (HTTP keep-alive), so growth helps new clients first.

What the per-deployment replica settings mean here, honestly: on one host every worker
hosts every deployment it serves, so the pool's size is the replica count of all of them
at once; ``min_replicas``/``max_replicas`` of one deployment do not size this pool.
``min_replicas = 0`` (scale to zero) is handled inside each worker by the inference app,
which unloads an idle model and loads it again on the next request. On Kubernetes the
replica settings become the Deployment's replicas and the HorizontalPodAutoscaler's bounds
of the bundle (``mlplane models package --k8s``), where a pod is what a worker is here.

Modules: this one checks the options (:func:`prepare`) and runs (:func:`serve`);
``_supervise`` holds the supervisor's loops, ``_workers`` the worker process and the pool,
``_autoscale`` the in-flight meter and the scaling rule.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplane.config import Settings, load_settings
from mlplane.errors import InvalidInput
from mlplane.security.network import is_loopback
from mlplane.security.tls import check_pair
from mlplane.serving._supervise import SYSTEM, Supervisor
from mlplane.serving._workers import log_to_stderr, reserve

__all__ = ["LOOPBACK_ONLY", "SYSTEM", "Supervisor", "check_tls", "prepare", "serve"]

log = logging.getLogger("mlplane.serving.supervisor")

LOOPBACK_ONLY = (
    "--auth none lets every caller use every deployment, so it binds only to loopback "
    "addresses (127.0.0.1, ::1, localhost); use token authentication (the default) to "
    "listen on others"
)


check_tls = check_pair
"""The certificate and key to serve HTTPS with: the checks and messages of ``mlplane server``."""


@dataclass(frozen=True)
class Hosted:
    """A deployment the server hosts, as announced at start."""

    project: str
    name: str
    model_ref: str


def prepare(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 2,
    min_workers: int | None = None,
    deployments: Sequence[str] | None = None,
    auth: str = "token",
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    settings: Settings | None = None,
    log_level: str = "info",
    poll_s: float = 0.5,
) -> Supervisor:
    """Check everything :func:`serve` needs before any worker starts, and hold the port.

    Raises:
        InvalidInput: a bad option, ``auth="none"`` off loopback, unusable TLS files, the
            port taken, or an unknown deployment name.
        SchemaOutdated: the database needs ``mlplane db upgrade``.
    """
    if auth not in ("token", "none"):
        raise InvalidInput(f"auth must be 'token' or 'none', not {auth!r}")
    if auth == "none" and not is_loopback(host):
        raise InvalidInput(LOOPBACK_ONLY)
    if workers < 1:
        raise InvalidInput(f"--workers must be at least 1, not {workers}")
    minimum = workers if min_workers is None else min_workers
    if not 1 <= minimum <= workers:
        raise InvalidInput(
            f"--min-workers must be between 1 and --workers ({workers}), not {minimum}"
        )
    if not 0 < poll_s <= 60:
        raise InvalidInput("poll_s must be above 0 and at most 60 seconds")
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port must be between 0 and 65535, not {port}")
    tls = check_tls(tls_cert, tls_key)
    settings = settings or load_settings()
    if settings.is_remote:
        raise InvalidInput(
            "mlplane serve runs beside the store (MLPLANE_HOME or MLPLANE_DB_URL), not "
            f"against a server ({settings.uri})"
        )
    from mlplane.services import Services  # the whole stack: only when serving

    services = Services.from_settings(settings)  # fails here on an old schema, once
    try:
        only = tuple(dict.fromkeys(deployments)) if deployments else None
        hosted = _hosted(services, only)
        if only is not None:
            missing = sorted(set(only) - {h.name for h in hosted})
            if missing:
                known = sorted({h.name for h in _hosted(services, None)})
                raise InvalidInput(
                    f"no deployment named {', '.join(map(repr, missing))}"
                    + (f"; deployments: {', '.join(known[:20])}" if known else "; none yet")
                )
        family, address, held = reserve(host, port)
    except BaseException:
        services.close()
        raise
    return Supervisor(
        services=services,
        family=family,
        address=address,
        held=held,
        host=host,
        workers=workers,
        min_workers=minimum,
        only=only,
        auth=auth,
        tls=tls,
        log_level=log_level,
        poll_s=poll_s,
        hosted=hosted,
    )


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 2,
    min_workers: int | None = None,
    deployments: Sequence[str] | None = None,
    auth: str = "token",
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    settings: Settings | None = None,
    log_level: str = "info",
    poll_s: float = 0.5,
) -> None:
    """Serve the deployments (all, or those named) until SIGINT or SIGTERM.

    Args:
        host: Address to listen on; loopback only with ``auth="none"``.
        port: Port every worker listens on (0: any free port, logged).
        workers: Worker processes at most.
        min_workers: Worker processes at least (default ``workers``: no autoscaling).
        deployments: Names of the deployments to host; default every one, including those
            created later.
        auth: ``token`` (API tokens) or ``none`` (every caller trusted; loopback only).
        tls_cert: PEM certificate (chain) to serve HTTPS with; needs ``tls_key``.
        tls_key: PEM private key of ``tls_cert``.
        settings: Where the store is; default from the environment.
        log_level: uvicorn's and mlplane's log level.
        poll_s: How often workers look for changed deployments and the control loop for
            due canary checks.

    Raises:
        InvalidInput: See :func:`prepare`; nothing has started then.
        MlplaneError: A worker crashed again and again right after starting.
    """
    supervisor = prepare(
        host=host,
        port=port,
        workers=workers,
        min_workers=min_workers,
        deployments=deployments,
        auth=auth,
        tls_cert=tls_cert,
        tls_key=tls_key,
        settings=settings,
        log_level=log_level,
        poll_s=poll_s,
    )
    log_to_stderr(log_level, "supervisor")
    log.info(
        "listening on %s; hosting %s",
        supervisor.url,
        ", ".join(h.name for h in supervisor.hosted) or "no deployment yet",
    )
    supervisor.run()


def _hosted(services: Any, only: Sequence[str] | None) -> list[Hosted]:
    return [
        Hosted(d.project, d.name, d.model_ref)
        for d in services.deployments.active(SYSTEM)
        if only is None or d.name in only
    ]
