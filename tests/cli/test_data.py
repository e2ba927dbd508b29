"""``mlplane data …`` end to end on the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from mlplane.config import load_settings
from mlplane.security import local_admin
from mlplane.services import Services
from mlplane.tracking.tables import ArtifactUploadRow
from tests.cli.helpers import Invoke


def _folder(root: Path) -> Path:
    root.mkdir()
    (root / "train.csv").write_text("id,amount\n" + "".join(f"{i},{i * 2}\n" for i in range(5000)))
    (root / "README.md").write_text("transactions\n")
    return root


def test_add_ls_show_get_tag(cli: Invoke, tmp_path: Path) -> None:
    src = _folder(tmp_path / "src")
    out = cli("data", "add", "transactions", str(src))
    assert out.exit_code == 0, out.output
    assert "transactions@1: 2 files" in out.output

    again = cli("data", "add", "transactions", str(src))
    assert again.exit_code == 0 and "no new version" in again.output

    (src / "README.md").write_text("changed\n")
    added = json.loads(cli("data", "add", "transactions", str(src), "--json").stdout)
    assert added["created"] is True and added["version"]["version"] == 2

    listed = json.loads(cli("data", "ls", "--json").stdout)
    assert [(d["name"], d["version"]) for d in listed] == [("transactions", 2)]
    table = cli("data", "ls").output
    assert "transactions" in table and "latest" in table

    shown = cli("data", "show", "transactions@1")
    assert shown.exit_code == 0 and "train.csv" in shown.output and "README.md" in shown.output
    assert "train.csv: 5,000 rows" in shown.output and "amount" in shown.output

    got = cli("data", "get", "transactions@1", str(tmp_path / "out"))
    assert got.exit_code == 0, got.output
    assert (tmp_path / "out" / "README.md").read_text() == "transactions\n"
    as_json = json.loads(
        cli("data", "get", "transactions@2", str(tmp_path / "o2"), "--json").stdout
    )
    assert as_json["version"]["version"] == 2 and as_json["path"] == str(tmp_path / "o2")

    assert cli("data", "tag", "transactions@1", "prod").exit_code == 0
    versions = json.loads(cli("data", "versions", "transactions", "--json").stdout)
    assert [(v["version"], v["tags"]) for v in versions] == [(2, ["latest"]), (1, ["prod"])]


def test_errors_exit_non_zero_with_the_reason(cli: Invoke, tmp_path: Path) -> None:
    missing = cli("data", "show", "nothing@1")
    assert missing.exit_code == 1 and "no dataset named 'nothing'" in missing.output
    cli("data", "add", "d", str(_folder(tmp_path / "src")))
    bad_version = cli("data", "show", "d@9")
    assert bad_version.exit_code == 1 and "versions: 1" in bad_version.output
    bad_path = cli("data", "add", "d", str(tmp_path / "nope"))
    assert bad_path.exit_code == 1 and "does not exist" in bad_path.output


CONTRACT = """
columns:
  id: {not_null: true, unique: true}
  amount: {between: {min: 0, max: 100000}}
"""


def _people(path: Path, rows: int, *, bad: bool = False) -> Path:
    lines = ["id,email,amount"]
    for i in range(rows):
        lines.append(f"{i},p{i}@example.net,{-1 if bad and i == 3 else i}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_gates_pii_diff_lineage_sample_sql_gc(cli: Invoke, tmp_path: Path) -> None:
    contract = tmp_path / "contract.yaml"
    contract.write_text(CONTRACT)
    csv = _people(tmp_path / "people.csv", 2000)
    out = cli("data", "add", "people", str(csv), "--contract", str(contract), "--pii", "mask")
    assert out.exit_code == 0, out.output
    assert "all 3 expectations passed" in out.output and "PII" in out.output

    _people(csv, 2000, bad=True)
    failed = cli("data", "add", "people", str(csv))  # contract and policy are inherited
    assert failed.exit_code == 1
    assert "between" in failed.output and "people.csv row 3" in failed.output

    _people(csv, 2500)
    assert cli("data", "add", "people", str(csv)).exit_code == 0
    diff = cli("data", "diff", "people@1", "people@2")
    assert diff.exit_code == 0 and "rows 2,000 -> 2,500 (+500)" in diff.output
    d = json.loads(cli("data", "diff", "people@1", "people@2", "--json").stdout)
    assert d["changed"] == ["people.csv"] and d["tables"][0]["rows_after"] == 2500

    shown = cli("data", "show", "people@2").output
    assert "Quality contract" in shown and "mask" in shown and "example.net" not in shown

    sample = cli("data", "sample", "people@2", "--fraction", "0.1", "--seed", "4", "--json")
    assert sample.exit_code == 0, sample.output
    assert json.loads(sample.stdout)["version"]["derived_from"] == "people@2"
    lineage = json.loads(cli("data", "lineage", "people@2", "--json").stdout)
    assert lineage["derived"] == ["people-sample@1"] and lineage["runs"] == []
    assert "people-sample@1" in cli("data", "lineage", "people@2").output

    q = cli("data", "sql", "SELECT count(*) AS n, max(id) AS top FROM 'people@2'", "--json")
    assert q.exit_code == 0, q.output
    assert json.loads(q.stdout) == [{"n": 2500, "top": 2499}]
    target = tmp_path / "out.parquet"
    wrote = cli("data", "sql", "SELECT * FROM 'people@1' WHERE id < 10", "-o", str(target))
    assert wrote.exit_code == 0 and target.exists()
    assert cli("data", "sql", "SELECT 1").exit_code == 1

    gc = json.loads(cli("gc", "--dry-run", "--json").stdout)
    assert gc["dry_run"] is True and gc["referenced_chunks"] > 0 and gc["uploads_expired"] == 0
    assert cli("gc", "--grace", "soon").exit_code == 1


def test_unhandled_pii_is_flagged_and_leakage_is_reported(cli: Invoke, tmp_path: Path) -> None:
    raw = _people(tmp_path / "raw.csv", 300)
    out = cli("data", "add", "raw", str(raw))
    assert out.exit_code == 0 and "cannot be a training input" in out.output
    train = tmp_path / "train.csv"
    test = tmp_path / "test.csv"
    train.write_text("id,x,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(400)))
    test.write_text("id,x,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(350, 450)))
    assert cli("data", "add", "train", str(train)).exit_code == 0
    assert cli("data", "add", "test", str(test)).exit_code == 0
    leak = cli("data", "leakage", "train@1", "test@1", "--key", "id", "--target", "label")
    assert leak.exit_code == 2, leak.output  # leaky: non-zero, for CI gates
    assert "50 of 100 test rows" in leak.output


def test_gc_expires_uploads_older_than_the_setting(
    cli: Invoke, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPLANE_UPLOAD_EXPIRY_S", "60")
    svc = Services.from_settings(load_settings())
    try:
        me = local_admin("tester")
        run = svc.tracking.create_run(me, svc.tracking.create_experiment(me, "uploads"))
        upload = svc.tracking.create_upload(me, "run", run.info.run_id, "big.bin", 1)
        part = tmp_path / "part.bin"
        part.write_bytes(b"x" * 1000)
        svc.tracking.put_upload_part(upload, 1, part)
        with svc.db.write() as s:  # two minutes old: past the 60 s the environment sets
            s.execute(
                update(ArtifactUploadRow).values(created_at=ArtifactUploadRow.created_at - 120_000)
            )
    finally:
        svc.close()
    dry = cli("gc", "--grace", "0", "--dry-run")
    assert dry.exit_code == 0 and "would expire 1 abandoned multipart uploads" in dry.output
    out = cli("gc", "--grace", "0")
    assert out.exit_code == 0 and "expired 1 abandoned multipart uploads" in out.output
    assert "1 orphan blobs" in out.output
    assert json.loads(cli("gc", "--json").stdout)["uploads_expired"] == 0
