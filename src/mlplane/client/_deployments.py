"""Deployment calls of the transports: the interface, in-process and over HTTP.

Kept apart from :mod:`mlplane.client.transport` so each transport file stays about its
own domain; :class:`~mlplane.client.transport.Transport` inherits the interface.
See :class:`mlplane.serving.service.DeploymentService` for semantics.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlplane.serving.entities import (
    Deployment,
    DeploymentConfig,
    DeploymentEvent,
    DeploymentStatus,
    Rollout,
    Routing,
    VersionTraffic,
)


class DeploymentCalls(abc.ABC):
    """What the SDK and CLI can do with deployments."""

    @abc.abstractmethod
    def create_deployment(
        self, name: str, model_ref: str, *, config: dict[str, Any] | None, project: str
    ) -> Deployment: ...

    @abc.abstractmethod
    def get_deployment(self, name: str, *, project: str) -> Deployment: ...

    @abc.abstractmethod
    def list_deployments(self, *, project: str) -> list[Deployment]: ...

    @abc.abstractmethod
    def configure_deployment(
        self, name: str, changes: dict[str, Any], *, project: str
    ) -> Deployment: ...

    @abc.abstractmethod
    def delete_deployment(self, name: str, *, project: str) -> None: ...

    @abc.abstractmethod
    def deployment_history(self, name: str, *, project: str) -> list[DeploymentEvent]: ...

    @abc.abstractmethod
    def deployment_status(
        self, name: str, *, window_s: float, project: str
    ) -> DeploymentStatus: ...

    @abc.abstractmethod
    def deployment_timeline(
        self, name: str, *, since_s: float, bucket_s: float, project: str
    ) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def start_canary(
        self,
        name: str,
        model_ref: str,
        *,
        steps: Sequence[float],
        interval: str | float,
        thresholds: dict[str, Any] | None,
        failure_limit: int,
        promote: bool,
        project: str,
    ) -> Deployment: ...

    @abc.abstractmethod
    def promote_deployment(self, name: str, *, project: str) -> Deployment: ...

    @abc.abstractmethod
    def set_shadow(
        self, name: str, model_ref: str | None, percent: float, *, project: str
    ) -> Deployment: ...

    @abc.abstractmethod
    def start_ab(
        self,
        name: str,
        variants: Sequence[tuple[str, float]],
        *,
        sticky_header: str | None,
        project: str,
    ) -> Deployment: ...

    @abc.abstractmethod
    def route_deployment(self, name: str, model_ref: str, *, project: str) -> Deployment: ...

    @abc.abstractmethod
    def rollback_deployment(self, name: str, *, project: str) -> Deployment: ...

    @abc.abstractmethod
    def ab_report(
        self, name: str, *, since_s: float | None, alpha: float, project: str
    ) -> dict[str, Any]: ...

    @abc.abstractmethod
    def record_feedback(self, name: str, request_id: str, label: Any, *, project: str) -> None: ...


class EmbeddedDeployments(DeploymentCalls):
    """Direct calls of ``self.services.deployments`` as ``self.principal``."""

    services: Any
    principal: Any

    @property
    def _d(self) -> Any:
        return self.services.deployments

    def create_deployment(self, name, model_ref, *, config, project):  # type: ignore[no-untyped-def]
        return self._d.create(self.principal, name, model_ref, config=config, project=project)

    def get_deployment(self, name, *, project):  # type: ignore[no-untyped-def]
        return self._d.get(self.principal, name, project=project)

    def list_deployments(self, *, project):  # type: ignore[no-untyped-def]
        return self._d.list_deployments(self.principal, project=project)

    def configure_deployment(self, name, changes, *, project):  # type: ignore[no-untyped-def]
        return self._d.configure(self.principal, name, changes, project=project)

    def delete_deployment(self, name, *, project):  # type: ignore[no-untyped-def]
        self._d.delete(self.principal, name, project=project)

    def deployment_history(self, name, *, project):  # type: ignore[no-untyped-def]
        return self._d.history(self.principal, name, project=project)

    def deployment_status(self, name, *, window_s, project):  # type: ignore[no-untyped-def]
        return self._d.status(self.principal, name, window_s=window_s, project=project)

    def deployment_timeline(self, name, *, since_s, bucket_s, project):  # type: ignore[no-untyped-def]
        return self._d.timeline(
            self.principal, name, since_s=since_s, bucket_s=bucket_s, project=project
        )

    def start_canary(  # type: ignore[no-untyped-def]
        self, name, model_ref, *, steps, interval, thresholds, failure_limit, promote, project
    ):
        return self._d.start_canary(
            self.principal,
            name,
            model_ref,
            steps=steps,
            interval=interval,
            thresholds=thresholds,
            failure_limit=failure_limit,
            promote=promote,
            project=project,
        )

    def promote_deployment(self, name, *, project):  # type: ignore[no-untyped-def]
        return self._d.promote(self.principal, name, project=project)

    def set_shadow(self, name, model_ref, percent, *, project):  # type: ignore[no-untyped-def]
        return self._d.set_shadow(self.principal, name, model_ref, percent, project=project)

    def start_ab(self, name, variants, *, sticky_header, project):  # type: ignore[no-untyped-def]
        return self._d.start_ab(
            self.principal, name, variants, sticky_header=sticky_header, project=project
        )

    def route_deployment(self, name, model_ref, *, project):  # type: ignore[no-untyped-def]
        return self._d.set_split(self.principal, name, model_ref, project=project)

    def rollback_deployment(self, name, *, project):  # type: ignore[no-untyped-def]
        return self._d.rollback(self.principal, name, project=project)

    def ab_report(self, name, *, since_s, alpha, project):  # type: ignore[no-untyped-def]
        return self._d.ab_report(
            self.principal, name, since_s=since_s, alpha=alpha, project=project
        )

    def record_feedback(self, name, request_id, label, *, project):  # type: ignore[no-untyped-def]
        self._d.record_feedback(self.principal, name, request_id, label, project=project)


def deployment(d: dict[str, Any]) -> Deployment:
    """A :class:`Deployment` from the server's JSON."""
    rollout = d.get("rollout")
    return Deployment(
        **{
            **d,
            "routing": Routing.from_dict(d["routing"]),
            "config": DeploymentConfig.from_dict(d["config"]),
            "rollout": Rollout(**rollout) if rollout else None,
        }
    )


class HttpDeployments(DeploymentCalls):
    """``/api/v1/deployments`` calls through ``self._call``."""

    if TYPE_CHECKING:

        def _call(self, method: str, path: str, **kw: Any) -> Any: ...  # HttpTransport's

    def _dep(self, method: str, name: str, tail: str = "", *, project: str, **kw: Any) -> Any:
        params = {"project": project, **kw.pop("params", {})}
        path = f"/deployments/{quote(name, safe='')}{tail}"
        return self._call(method, path, params=params, **kw)

    def create_deployment(self, name, model_ref, *, config, project):  # type: ignore[no-untyped-def]
        body = {"name": name, "model": model_ref, "config": config}
        return deployment(
            self._call("POST", "/deployments", json=body, params={"project": project})
        )

    def get_deployment(self, name, *, project):  # type: ignore[no-untyped-def]
        return deployment(self._dep("GET", name, project=project))

    def list_deployments(self, *, project):  # type: ignore[no-untyped-def]
        out = self._call("GET", "/deployments", params={"project": project})
        return [deployment(d) for d in out["deployments"]]

    def configure_deployment(self, name, changes, *, project):  # type: ignore[no-untyped-def]
        return deployment(self._dep("PATCH", name, "/config", json=changes, project=project))

    def delete_deployment(self, name, *, project):  # type: ignore[no-untyped-def]
        self._dep("DELETE", name, project=project)

    def deployment_history(self, name, *, project):  # type: ignore[no-untyped-def]
        out = self._dep("GET", name, "/history", project=project)
        return [
            DeploymentEvent(**{**e, "routing": Routing.from_dict(e["routing"])})
            for e in out["events"]
        ]

    def deployment_status(self, name, *, window_s, project):  # type: ignore[no-untyped-def]
        out = self._dep("GET", name, "/status", project=project, params={"window_s": window_s})
        return DeploymentStatus(
            deployment=deployment(out["deployment"]),
            traffic=[VersionTraffic(**t) for t in out["traffic"]],
            since=out["since"],
            workers=out["workers"],
        )

    def deployment_timeline(self, name, *, since_s, bucket_s, project):  # type: ignore[no-untyped-def]
        params = {"since_s": since_s, "bucket_s": bucket_s}
        return self._dep("GET", name, "/timeline", project=project, params=params)["points"]

    def start_canary(  # type: ignore[no-untyped-def]
        self, name, model_ref, *, steps, interval, thresholds, failure_limit, promote, project
    ):
        body = {
            "model": model_ref,
            "steps": list(steps),
            "interval": interval,
            "thresholds": thresholds,
            "failure_limit": failure_limit,
            "promote": promote,
        }
        return deployment(self._dep("POST", name, "/canary", json=body, project=project))

    def promote_deployment(self, name, *, project):  # type: ignore[no-untyped-def]
        return deployment(self._dep("POST", name, "/promote", project=project))

    def set_shadow(self, name, model_ref, percent, *, project):  # type: ignore[no-untyped-def]
        body = {"model": model_ref, "percent": percent}
        return deployment(self._dep("PUT", name, "/shadow", json=body, project=project))

    def start_ab(self, name, variants, *, sticky_header, project):  # type: ignore[no-untyped-def]
        body = {"variants": [list(v) for v in variants], "sticky_header": sticky_header}
        return deployment(self._dep("PUT", name, "/ab", json=body, project=project))

    def route_deployment(self, name, model_ref, *, project):  # type: ignore[no-untyped-def]
        return deployment(
            self._dep("PUT", name, "/route", json={"model": model_ref}, project=project)
        )

    def rollback_deployment(self, name, *, project):  # type: ignore[no-untyped-def]
        return deployment(self._dep("POST", name, "/rollback", project=project))

    def ab_report(self, name, *, since_s, alpha, project):  # type: ignore[no-untyped-def]
        params: dict[str, Any] = {"alpha": alpha}
        if since_s is not None:
            params["since_s"] = since_s
        return self._dep("GET", name, "/ab-report", project=project, params=params)

    def record_feedback(self, name, request_id, label, *, project):  # type: ignore[no-untyped-def]
        body = {"request_id": request_id, "label": label}
        self._dep("POST", name, "/feedback", json=body, project=project)
