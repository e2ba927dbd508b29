"""Fixtures for the security tests: the services on a fresh embedded store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlplane.config import load_settings
from mlplane.services import Services


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = Services.from_settings(load_settings(home=tmp_path / "home"))
    yield svc
    svc.close()
