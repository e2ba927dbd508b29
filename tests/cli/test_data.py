"""``mlplane data …`` end to end on the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

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
