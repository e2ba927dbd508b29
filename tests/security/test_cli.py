"""``mlplane users``, ``mlplane tokens`` and ``mlplane admin bootstrap`` on a real store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mlplane.cli.main import app
from mlplane.config import load_settings
from mlplane.services import Services


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # tables are checked by content


def _login(secret: str) -> str:
    svc = Services.from_settings(load_settings())
    try:
        return svc.identities.authenticate(secret, source="test").name
    finally:
        svc.close()


def test_bootstrap_prints_a_working_token_once() -> None:
    first = cli("admin", "bootstrap", "--name", "boss")
    assert first.exit_code == 0, first.output
    secret = next(line for line in first.stdout.splitlines() if line.startswith("mlp_"))
    assert _login(secret) == "boss"
    assert "not shown again" in first.stdout
    again = cli("admin", "bootstrap")
    assert again.exit_code == 1 and "bootstrap runs once" in again.stderr
    listed = cli("tokens", "ls")
    assert "boss" in listed.stdout and "bootstrap" in listed.stdout and secret not in listed.stdout


def test_users_lifecycle_with_json() -> None:
    made = json.loads(cli("users", "create", "ci-bot", "--service", "--json").stdout)
    assert made["kind"] == "service" and made["roles"] == {} and not made["is_platform_admin"]
    granted = json.loads(cli("users", "grant", "ci-bot", "vision", "contributor", "--json").stdout)
    assert granted["roles"] == {"vision": "contributor"}
    assert "ci-bot is now viewer in *" in cli("users", "grant", "ci-bot", "*", "viewer").stdout
    table = cli("users", "ls").stdout
    assert "ci-bot" in table and "service" in table and "vision=contributor" in table
    revoked = json.loads(cli("users", "revoke-role", "ci-bot", "vision", "--json").stdout)
    assert revoked["roles"] == {"*": "viewer"}
    assert json.loads(cli("users", "disable", "ci-bot", "--json").stdout)["disabled"] is True
    assert "ci-bot is enabled" in cli("users", "disable", "ci-bot", "--enable").stdout
    listed = json.loads(cli("users", "ls", "--json").stdout)
    assert [u["name"] for u in listed] == ["ci-bot"]
    bad = cli("users", "grant", "ci-bot", "vision", "owner")
    assert bad.exit_code == 1 and "unknown role 'owner'" in bad.stderr


def test_tokens_create_list_revoke() -> None:
    cli("users", "create", "dana")
    cli("users", "grant", "dana", "vision", "approver")
    out = cli(
        "tokens", "create", "dana", "--name", "ci", "--project", "vision", "--role", "read",
        "--expires", "12h", "--json",
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    made = json.loads(out.stdout)
    assert made["project"] == "vision" and made["role"] == "viewer" and made["name"] == "ci"
    assert made["expires_at"] - made["created_at"] == 12 * 3_600_000
    assert _login(made["token"]) == "dana"
    listed = json.loads(cli("tokens", "ls", "--user", "dana", "--json").stdout)
    assert [(t["token_id"], t["state"]) for t in listed] == [(made["token_id"], "active")]
    assert "token" not in listed[0] and listed[0]["last_used_at"] is not None
    assert f"Revoked {made['token_id']}" in cli("tokens", "revoke", made["token_id"]).stdout
    assert json.loads(cli("tokens", "ls", "--json").stdout)[0]["state"] == "revoked"
    never = json.loads(cli("tokens", "create", "dana", "--expires", "never", "--json").stdout)
    assert never["expires_at"] is None
    bad = cli("tokens", "create", "dana", "--expires", "soon")
    assert bad.exit_code == 1 and "invalid token lifetime" in bad.stderr
    missing = cli("tokens", "revoke", "tok_000000000000")
    assert missing.exit_code == 1 and "no token 'tok_000000000000'" in missing.stderr


def test_identities_are_not_managed_through_a_remote_uri(tmp_path: Path) -> None:
    refused = cli("--uri", "http://127.0.0.1:9", "users", "ls")
    assert refused.exit_code == 1 and "managed on the server's own store" in refused.stderr
    elsewhere = tmp_path / "other"
    assert cli("--uri", str(elsewhere), "users", "create", "eve").exit_code == 0
    assert (elsewhere / "mlplane.db").exists()
    assert "eve" not in cli("users", "ls").stdout


def test_server_with_auth_none_refuses_a_non_loopback_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = cli("server", "--host", "0.0.0.0", "--auth", "none")
    assert refused.exit_code == 2 and "binds only to loopback addresses" in refused.stderr
    monkeypatch.setenv("MLPLANE_AUTH", "none")
    assert cli("server", "--host", "0.0.0.0").exit_code == 2
