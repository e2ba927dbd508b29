"""Fixtures for the CLI tests: a fresh embedded store per test and a runner over the real app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mlplane import fluent
from mlplane.cli.main import app
from mlplane.client import Client
from tests.cli.helpers import Invoke


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("MLPLANE_HOME", str(home))
    for var in ("MLPLANE_URI", "MLPLANE_DB_URL", "MLPLANE_ARTIFACTS_URL", "MLPLANE_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    # Tables are checked by content: give them room (xdist workers export COLUMNS=80).
    monkeypatch.setenv("COLUMNS", "200")
    fluent.set_tracking_uri(None)
    yield home
    fluent.set_tracking_uri(None)


@pytest.fixture
def cli(home: Path) -> Invoke:
    """``cli("runs", "ls")`` runs ``mlplane runs ls`` in-process; unexpected errors propagate."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


@pytest.fixture
def sdk(home: Path) -> Iterator[Client]:
    c = Client()
    yield c
    c.close()
