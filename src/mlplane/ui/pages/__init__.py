"""The UI's pages, one module a section, each with its own ``router``."""

from __future__ import annotations

from mlplane.ui.pages import home

PAGES = [home]
"""Included by :func:`mlplane.ui.app.install`, in this order."""
