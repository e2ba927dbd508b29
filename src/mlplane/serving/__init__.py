"""Serving: the model server for one version folder or packaged bundle."""

from __future__ import annotations

from mlplane.serving.model_app import create_model_app, serve

__all__ = ["create_model_app", "serve"]
