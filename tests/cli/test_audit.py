"""``mlplane audit ls | export | verify | checkpoint`` on a real embedded store."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from mlplane.client import Client
from mlplane.config import load_settings
from mlplane.db import Database
from tests.cli.helpers import Invoke


def _events(sdk: Client) -> None:
    exp = sdk.create_experiment("audited")
    for i in range(3):
        sdk.create_run(exp, run_name=f"r{i}")


def test_ls_export_checkpoint_verify(cli: Invoke, sdk: Client, tmp_path: Path) -> None:
    _events(sdk)
    table = cli("audit", "ls").stdout
    assert "experiment.create" in table and "run.create" in table and "audited" in table
    listed = json.loads(
        cli("audit", "ls", "--action", "run.create", "--limit", "2", "--json").stdout
    )
    assert [e["seq"] for e in listed] == [3, 4] and len(listed[0]["hash"]) == 64
    assert json.loads(cli("audit", "ls", "--actor", "nobody", "--json").stdout) == []
    assert "No audit events" in cli("audit", "ls", "--since", "2999-01-01").stdout

    out = tmp_path / "audit.jsonl"
    assert cli("audit", "export", "--since", "2000-01-01T00:00", "--out", str(out)).exit_code == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in lines] == [1, 2, 3, 4]
    assert lines[1]["prev_hash"] == lines[0]["hash"]
    streamed = cli("audit", "export").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in streamed] == [1, 2, 3, 4]

    signed = json.loads(cli("audit", "checkpoint", "--json").stdout)
    assert signed["seq"] == 4 and signed["hash"] == lines[-1]["hash"]
    ok = cli("audit", "verify")
    assert ok.exit_code == 0 and "5 events, 1 signed checkpoints" in ok.stdout


def test_verify_names_the_first_bad_sequence(cli: Invoke, sdk: Client) -> None:
    _events(sdk)
    db = Database(load_settings().resolved_db_url)
    with db.write() as s:
        s.execute(text("UPDATE audit_events SET resource = 'run/forged' WHERE seq = 3"))
    db.dispose()
    bad = cli("audit", "verify")
    assert bad.exit_code == 1
    assert "first bad sequence 3" in bad.stderr and "event 3 was altered" in bad.stderr
    report = json.loads(cli("audit", "verify", "--json").stdout)
    assert (report["ok"], report["first_bad_seq"], report["events"]) == (False, 3, 2)


def test_bad_options_and_remote_uri_are_refused(cli: Invoke) -> None:
    assert "not an ISO 8601 time" in cli("audit", "ls", "--since", "yesterday").stderr
    assert "use jsonl" in cli("audit", "export", "--format", "csv").stderr
    remote = cli("--uri", "http://127.0.0.1:1", "audit", "verify")
    assert remote.exit_code == 1 and "server's own store" in remote.stderr
    assert "nothing to checkpoint" in cli("audit", "checkpoint").stderr
