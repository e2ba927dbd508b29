"""The inference worker: one process's app that hosts deployments and answers predictions.

``app`` builds it (:func:`create_inference_app`); ``hosting`` loads, swaps and unloads
versions; ``watch`` follows the database; ``batcher`` groups concurrent requests into one
predict call; ``predictors`` and ``readers`` turn payloads into what a model takes;
``protocols`` speaks MLflow's bodies and the Open Inference Protocol; ``predict`` is the hot
path; ``shadow`` mirrors traffic; ``metrics`` and ``reporter`` count and report; ``auth``
checks tokens with a short cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlplane._lazy import lazy_attrs

if TYPE_CHECKING:
    from mlplane.serving.inference.app import create_inference_app

__all__ = ["create_inference_app"]

__getattr__ = lazy_attrs(__name__, {"create_inference_app": "app"})
