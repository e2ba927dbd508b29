"""Settings are read in one place: keywords, then environment, then mlplane.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlplane.config import load_settings
from mlplane.errors import InvalidInput


def test_defaults_live_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLANE_HOME", str(tmp_path))
    s = load_settings()
    assert s.resolved_db_url == f"sqlite:///{tmp_path / 'mlplane.db'}"
    assert s.resolved_artifacts_url == (tmp_path / "blobs").as_uri()
    assert not s.is_remote


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "mlplane.toml"
    toml.write_text('flush_interval_s = 5.0\nheartbeat_timeout_s = 99.0\nuri = "http://x:1"\n')
    monkeypatch.setenv("MLPLANE_CONFIG", str(toml))
    monkeypatch.setenv("MLPLANE_HEARTBEAT_TIMEOUT_S", "42")
    s = load_settings(uri="http://127.0.0.1:5000")
    assert s.flush_interval_s == 5.0  # from the file
    assert s.heartbeat_timeout_s == 42  # the environment beats the file
    assert s.uri == "http://127.0.0.1:5000" and s.is_remote  # keywords beat both


def test_uri_forms(tmp_path: Path) -> None:
    assert load_settings(uri=str(tmp_path)).home == tmp_path
    pg = load_settings(uri="postgresql://u@h/db")
    assert pg.resolved_db_url == "postgresql://u@h/db" and not pg.is_remote


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLANE_FLUSH_INTERVAL_S", "-1")
    with pytest.raises(InvalidInput, match="MLPLANE_FLUSH_INTERVAL_S"):
        load_settings()


def test_secrets_do_not_leak_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLANE_TOKEN", "supersecret")
    s = load_settings()
    assert "supersecret" not in repr(s) and s.token is not None
    assert s.token.get_secret_value() == "supersecret"
