"""Serving: deployments with traffic splits and rollouts, the inference server that hosts
them, and batch inference.

The package: ``entities`` (deployments, routing, rollouts), ``tables``, ``service``
(:class:`~mlplane.serving.service.DeploymentService`: the use cases, permission checks and
audit), ``rollouts`` (the canary controller), ``stats``/``analysis``/``abstats``/``routing``
(the algorithms), and ``model_app`` (one model version or bundle over HTTP).
Names load on first use, so reading deployments loads no web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlplane._lazy import lazy_attrs

if TYPE_CHECKING:
    from mlplane.serving.model_app import create_model_app, serve

__all__ = ["create_model_app", "serve"]

__getattr__ = lazy_attrs(__name__, {"create_model_app": "model_app", "serve": "model_app"})
