"""Deployments from Python: the SDK's face of :mod:`mlplane.serving`.

::

    mlplane.deployments.create("fraud", "fraud@champion")
    mlplane.deployments.canary("fraud", "fraud@challenger", steps=[10, 50, 100],
                               interval="60s", max_error_rate=0.01, max_p99_ms=50)
    mlplane.deployments.status("fraud").traffic

Each function is one call through the client's transport, embedded or HTTP; the rules
live in :class:`mlplane.serving.service.DeploymentService`. ``mlplane serve`` answers
the predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlplane.projects import DEFAULT_PROJECT
from mlplane.serving.entities import Deployment, DeploymentEvent, DeploymentStatus

__all__ = [
    "ab",
    "ab_report",
    "canary",
    "configure",
    "create",
    "delete",
    "feedback",
    "get",
    "history",
    "ls",
    "promote",
    "rollback",
    "route",
    "shadow",
    "status",
    "timeline",
]


def _t() -> Any:
    from mlplane import fluent

    return fluent.client().transport


def create(name: str, model: str, *, project: str = DEFAULT_PROJECT, **config: Any) -> Deployment:
    """Deploy ``model`` (``fraud@champion``); ``config`` takes
    :class:`~mlplane.serving.entities.DeploymentConfig` fields (``max_wait_ms=5``, …)."""
    return _t().create_deployment(name, model, config=config or None, project=project)  # type: ignore[no-any-return]


def get(name: str, *, project: str = DEFAULT_PROJECT) -> Deployment:
    return _t().get_deployment(name, project=project)  # type: ignore[no-any-return]


def ls(*, project: str = DEFAULT_PROJECT) -> list[Deployment]:
    return _t().list_deployments(project=project)  # type: ignore[no-any-return]


def configure(name: str, *, project: str = DEFAULT_PROJECT, **changes: Any) -> Deployment:
    return _t().configure_deployment(name, changes, project=project)  # type: ignore[no-any-return]


def delete(name: str, *, project: str = DEFAULT_PROJECT) -> None:
    _t().delete_deployment(name, project=project)


def canary(
    name: str,
    model: str,
    *,
    steps: Sequence[float] = (10, 25, 50, 100),
    interval: str | float = "60s",
    failure_limit: int = 2,
    promote: bool = True,
    project: str = DEFAULT_PROJECT,
    **thresholds: Any,
) -> Deployment:
    """Start a canary; ``thresholds`` are
    :class:`~mlplane.serving.analysis.CanaryThresholds` fields (``max_error_rate``,
    ``max_p99_ms``, ``max_p99_ratio``, ``max_prediction_shift``, ``shift_method``,
    ``min_requests``)."""
    return _t().start_canary(  # type: ignore[no-any-return]
        name,
        model,
        steps=list(steps),
        interval=interval,
        thresholds=thresholds or None,
        failure_limit=failure_limit,
        promote=promote,
        project=project,
    )


def promote(name: str, *, project: str = DEFAULT_PROJECT) -> Deployment:
    return _t().promote_deployment(name, project=project)  # type: ignore[no-any-return]


def shadow(
    name: str, model: str | None, percent: float, *, project: str = DEFAULT_PROJECT
) -> Deployment:
    """Mirror ``percent`` % of requests to ``model``; 0 stops mirroring."""
    return _t().set_shadow(name, model, percent, project=project)  # type: ignore[no-any-return]


def ab(
    name: str,
    variants: Sequence[tuple[str, float]],
    *,
    sticky_header: str | None = None,
    project: str = DEFAULT_PROJECT,
) -> Deployment:
    """Split traffic between ``variants`` (``[("fraud@3", 50), ("fraud@4", 50)]``)."""
    return _t().start_ab(name, list(variants), sticky_header=sticky_header, project=project)  # type: ignore[no-any-return]


def route(name: str, model: str, *, project: str = DEFAULT_PROJECT) -> Deployment:
    """Send all live traffic to ``model``."""
    return _t().route_deployment(name, model, project=project)  # type: ignore[no-any-return]


def rollback(name: str, *, project: str = DEFAULT_PROJECT) -> Deployment:
    return _t().rollback_deployment(name, project=project)  # type: ignore[no-any-return]


def status(
    name: str, *, window_s: float = 300.0, project: str = DEFAULT_PROJECT
) -> DeploymentStatus:
    return _t().deployment_status(name, window_s=window_s, project=project)  # type: ignore[no-any-return]


def timeline(
    name: str, *, since_s: float = 3600.0, bucket_s: float = 60.0, project: str = DEFAULT_PROJECT
) -> list[dict[str, Any]]:
    """Requests, errors and latency per version over time: what to chart."""
    return _t().deployment_timeline(name, since_s=since_s, bucket_s=bucket_s, project=project)  # type: ignore[no-any-return]


def history(name: str, *, project: str = DEFAULT_PROJECT) -> list[DeploymentEvent]:
    return _t().deployment_history(name, project=project)  # type: ignore[no-any-return]


def ab_report(
    name: str,
    *,
    since_s: float | None = None,
    alpha: float = 0.05,
    project: str = DEFAULT_PROJECT,
) -> dict[str, Any]:
    return _t().ab_report(name, since_s=since_s, alpha=alpha, project=project)  # type: ignore[no-any-return]


def feedback(name: str, request_id: str, label: Any, *, project: str = DEFAULT_PROJECT) -> None:
    """The ground truth of the answered request ``request_id`` (its ``X-Request-Id``)."""
    _t().record_feedback(name, request_id, label, project=project)
