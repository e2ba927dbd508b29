"""``mlplane experiments …`` and the root options, on a real embedded store."""

from __future__ import annotations

import json
from pathlib import Path

from mlplane._version import __version__
from tests.cli.helpers import Invoke


def test_version(cli: Invoke) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"mlplane {__version__}"


def test_create_then_list_as_table_and_json(cli: Invoke) -> None:
    created = cli(
        "experiments",
        "create",
        "churn",
        "--tag",
        "team=growth",
        "--tag",
        "tier=gold",
        "--description",
        "weekly churn model",
        "--json",
    )
    assert created.exit_code == 0, created.output
    exp = json.loads(created.stdout)
    assert exp["name"] == "churn"
    assert exp["tags"] == {"team": "growth", "tier": "gold"}
    assert exp["description"] == "weekly churn model"
    assert exp["lifecycle_stage"] == "active"

    assert cli("experiments", "create", "fraud").exit_code == 0

    table = cli("experiments", "ls")
    assert table.exit_code == 0
    assert "churn" in table.stdout and "fraud" in table.stdout
    assert "team=growth" in table.stdout
    assert "weekly churn model" in table.stdout

    listed = json.loads(cli("experiments", "ls", "--json").stdout)
    assert {e["name"] for e in listed} == {"churn", "fraud"}
    assert {e["experiment_id"] for e in listed} >= {exp["experiment_id"]}


def test_create_twice_is_an_error_without_traceback(cli: Invoke) -> None:
    assert cli("experiments", "create", "dup").exit_code == 0
    again = cli("experiments", "create", "dup")
    assert again.exit_code == 1
    assert "error: " in again.stderr and "exists already" in again.stderr
    assert "Traceback" not in again.output


def test_bad_tag_syntax(cli: Invoke) -> None:
    result = cli("experiments", "create", "x", "--tag", "novalue")
    assert result.exit_code == 1
    assert "not KEY=VALUE" in result.stderr


def test_rm_and_restore(cli: Invoke) -> None:
    eid = json.loads(cli("experiments", "create", "old", "--json").stdout)["experiment_id"]
    cli("experiments", "create", "keep")

    removed = cli("experiments", "rm", "old")
    assert removed.exit_code == 0
    assert f"mlplane experiments restore {eid}" in removed.stdout
    active = json.loads(cli("experiments", "ls", "--json").stdout)
    assert [e["name"] for e in active] == ["keep"]
    deleted = json.loads(cli("experiments", "ls", "--deleted", "--json").stdout)
    assert [e["name"] for e in deleted] == ["old"]
    assert len(json.loads(cli("experiments", "ls", "--all", "--json").stdout)) == 2
    assert "deleted" in cli("experiments", "ls", "--all").stdout

    assert cli("experiments", "restore", eid).exit_code == 0
    assert {e["name"] for e in json.loads(cli("experiments", "ls", "--json").stdout)} == {
        "old",
        "keep",
    }

    again = cli("experiments", "restore", eid)
    assert again.exit_code == 1
    assert "already active" in again.stderr
    missing = cli("experiments", "rm", "nope")
    assert missing.exit_code == 1
    assert "no experiment with id or name 'nope'" in missing.stderr


def test_all_and_deleted_together_is_a_usage_error(cli: Invoke) -> None:
    assert cli("experiments", "ls", "--all", "--deleted").exit_code == 2


def test_empty_list_says_what_to_do(cli: Invoke) -> None:
    result = cli("experiments", "ls")
    assert result.exit_code == 0
    assert "mlplane experiments create" in result.stdout
    assert json.loads(cli("experiments", "ls", "--json").stdout) == []


def test_uri_option_picks_another_embedded_store(cli: Invoke, tmp_path: Path) -> None:
    other = tmp_path / "other-store"
    assert cli("--uri", str(other), "experiments", "create", "elsewhere").exit_code == 0
    assert (other / "mlplane.db").is_file()
    here = json.loads(cli("experiments", "ls", "--json").stdout)
    there = json.loads(cli("--uri", str(other), "experiments", "ls", "--json").stdout)
    assert [e["name"] for e in here] == []
    assert [e["name"] for e in there] == ["elsewhere"]
