"""Fixtures shared by the tracking tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlplane.config import load_settings
from mlplane.services import Services


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    """Every service on a fresh embedded SQLite store under ``tmp_path``."""
    services = Services.from_settings(load_settings(home=tmp_path / "home"))
    yield services
    services.close()
