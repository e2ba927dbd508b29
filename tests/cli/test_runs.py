"""``mlplane runs …`` on a real embedded store filled through the SDK."""

from __future__ import annotations

import json

import pytest

from mlplane.client import Client
from mlplane.errors import NotFound
from tests.cli.helpers import Invoke, make_runs


def _ids(result_stdout: str) -> list[str]:
    return [r["info"]["run_id"] for r in json.loads(result_stdout)]


def test_ls_table_shows_short_ids_and_default_columns(cli: Invoke, sdk: Client) -> None:
    _, ids = make_runs(sdk)
    result = cli("runs", "ls", "--experiment", "exp-a")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for rid in ids:
        assert rid[:8] in out
        assert rid not in out
    for header in ("Run ID", "Name", "Status", "Start", "Duration", "acc", "loss", "lr", "model"):
        assert header in out
    assert "lr-0.01" in out and "FINISHED" in out and "0.95" in out


def test_ls_json_filter_and_order(cli: Invoke, sdk: Client) -> None:
    eid, ids = make_runs(sdk)
    everything = cli("runs", "ls", "--json")  # default: every active experiment
    assert sorted(_ids(everything.stdout)) == sorted(ids)

    good = cli(
        "runs",
        "ls",
        "--experiment",
        eid,
        "--filter",
        "metrics.acc > 0.85",
        "--order-by",
        "metrics.acc DESC",
        "--json",
    )
    assert good.exit_code == 0, good.output
    runs = json.loads(good.stdout)
    assert [r["info"]["run_id"] for r in runs] == [ids[1], ids[2]]
    assert runs[0]["data"]["metrics"]["acc"] == 0.95
    assert runs[0]["data"]["params"] == {"lr": "0.01", "model": "mlp"}

    top = cli("runs", "ls", "-e", "exp-a", "-o", "metrics.acc ASC", "-n", "1", "--json")
    assert _ids(top.stdout) == [ids[0]]
    table = cli("runs", "ls", "-e", "exp-a", "-n", "1")
    assert "raise --max-results" in table.stdout


def test_ls_chosen_columns(cli: Invoke, sdk: Client) -> None:
    make_runs(sdk)
    out = cli("runs", "ls", "--metric", "loss", "--param", "lr").stdout
    assert "loss" in out and "lr" in out
    assert "acc" not in out.replace("lr-0", "")  # only the chosen metric is a column
    assert "model" not in out


def test_ls_bad_filter_exits_1_with_the_column(cli: Invoke, sdk: Client) -> None:
    make_runs(sdk)
    result = cli("runs", "ls", "--filter", "metrics.acc >> 0.9")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: invalid filter at column ")
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_show_table_and_json(cli: Invoke, sdk: Client) -> None:
    eid, ids = make_runs(sdk)
    sdk.set_note(ids[1], "best so far")
    result = cli("runs", "show", ids[1][:8])  # a unique prefix is enough
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        ids[1],
        "lr-0.01",
        "exp-a",
        "FINISHED",
        "lr",
        "0.01",
        "acc",
        "0.95",
        "team",
        "vision",
        "toy/data",
        "notes/readme.txt",
        "best so far",
    ):
        assert text in out, text
    assert "mlplane.seed" not in out
    assert "system tags hidden" in out
    assert "mlplane.seed" in cli("runs", "show", ids[1], "--system").stdout

    data = json.loads(cli("runs", "show", ids[1], "--json").stdout)
    assert data["info"]["run_id"] == ids[1]
    assert data["info"]["experiment_id"] == eid
    assert data["data"]["metrics"] == {"acc": 0.95, "loss": pytest.approx(0.05)}
    assert data["inputs"] == [
        {
            "kind": "dataset",
            "name": "toy/data",
            "version": "1",
            "digest": "",
            "source": "",
            "context": "",
            "allow_pii": False,
            "source_type": "",
            "schema": "",
            "profile": "",
        }
    ]
    assert [a["path"] for a in data["artifacts"]] == ["notes/readme.txt"]
    assert data["artifacts"][0]["size"] == 5


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("0123456789abcdef0123456789abcdef", "run 0123456789abcdef0123456789abcdef does not exist"),
        ("deadbeef", "no run id starts with 'deadbeef'"),
        ("not-a-run", "not a run id: 'not-a-run'"),
    ],
)
def test_show_unknown_run_exits_1(cli: Invoke, sdk: Client, ref: str, message: str) -> None:
    make_runs(sdk)
    result = cli("runs", "show", ref)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: {message}" or message in result.stderr
    assert "Traceback" not in result.output


def test_compare_side_by_side(cli: Invoke, sdk: Client) -> None:
    _, ids = make_runs(sdk)
    base, other = ids[0], ids[1]
    result = cli("runs", "compare", base[:8], other[:8])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert base[:8] in out and other[:8] in out
    assert "* lr" in out  # differs: highlighted and marked
    assert "* model" not in out and "  model" in out
    assert "+0.15 (+18." in out  # acc 0.80 -> 0.95: +18.75%
    assert "-0.15 (-75.0%)" in out  # loss 0.20 -> 0.05

    data = json.loads(cli("runs", "compare", base, other, ids[2], "--json").stdout)
    assert [r["run_id"] for r in data["runs"]] == ids
    assert data["params"]["lr"] == ["0.1", "0.01", "0.001"]
    assert data["params_differ"] == ["lr"]
    acc = data["metrics"]["acc"]
    assert acc["values"] == [0.8, 0.95, 0.9]
    assert acc["delta"][0] == 0 and acc["delta"][1] == pytest.approx(0.15)
    assert acc["delta_pct"][2] == pytest.approx(12.5)


def test_compare_needs_two_runs(cli: Invoke, sdk: Client) -> None:
    _, ids = make_runs(sdk)
    assert cli("runs", "compare", ids[0]).exit_code == 2


def test_rm_restore_and_purge(cli: Invoke, sdk: Client) -> None:
    _, ids = make_runs(sdk)
    removed = cli("runs", "rm", ids[0], ids[1][:8])
    assert removed.exit_code == 0, removed.output
    assert f"mlplane runs restore {ids[0]} {ids[1]}" in removed.stdout
    assert _ids(cli("runs", "ls", "--json").stdout) == [ids[2]]
    assert sorted(_ids(cli("runs", "ls", "--deleted", "--json").stdout)) == sorted(ids[:2])

    assert cli("runs", "restore", ids[0][:8]).exit_code == 0
    assert sorted(_ids(cli("runs", "ls", "--json").stdout)) == sorted([ids[0], ids[2]])

    declined = cli("runs", "rm", "--purge", ids[2], input="n\n")
    assert declined.exit_code == 1
    assert sdk.get_run(ids[2]).info.run_id == ids[2]
    purged = cli("runs", "rm", "--purge", "--yes", ids[2])
    assert purged.exit_code == 0
    with pytest.raises(NotFound):
        sdk.get_run(ids[2])
