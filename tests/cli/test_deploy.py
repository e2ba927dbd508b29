"""``mlplane deploy …`` on a real embedded store: create, traffic changes, status, history,
A/B report, and bad input as a clear non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from mlplane.config import load_settings
from mlplane.db.engine import now_ms
from mlplane.security import Principal, local_admin
from mlplane.services import Services
from mlplane.serving.stats import WindowStats
from tests.cli.helpers import Invoke

ME = local_admin("tester")
SERVE = Principal("mlplane-serve", is_platform_admin=True, source="serve")


def _models(home: Path, n: int = 2) -> None:
    svc = Services.from_settings(load_settings(home=home))
    try:
        x = np.random.default_rng(1).normal(size=(100, 3))
        for i in range(n):
            m = LogisticRegression(C=1 + i).fit(x, (x[:, 0] > 0).astype(int))
            svc.registry.register(ME, "fraud", m, input_example=x[:3])
        svc.registry.set_alias(ME, "fraud", "champion", 1)
    finally:
        svc.close()


def _traffic(home: Path, name: str) -> None:
    svc = Services.from_settings(load_settings(home=home))
    try:
        d = svc.deployments.get(ME, name)
        rows = []
        for version, errors in ((1, 2), (2, 30)):
            w = WindowStats()
            for i in range(300):
                w.record(
                    4.0 + i % 7, 1, status=500 if i < errors else 200, predictions=np.array([i % 2])
                )
            rows.append(
                {
                    "deployment_id": d.deployment_id,
                    "version": version,
                    "kind": "live",
                    "worker": "w",
                    "window_start": now_ms() - 1000,
                    "window_end": now_ms(),
                    "stats": w.to_dict(),
                }
            )
        svc.deployments.record_windows(SERVE, rows)
    finally:
        svc.close()


def test_deploy_lifecycle(cli: Invoke, home: Path) -> None:
    _models(home)
    out = cli("deploy", "create", "fraud-api", "--model", "fraud@champion", "--capture", "5")
    assert out.exit_code == 0, out.output
    assert "v1: 100%" in out.output
    listed = json.loads(cli("deploy", "ls", "--json").output)
    assert listed[0]["name"] == "fraud-api" and listed[0]["config"]["capture_percent"] == 5
    out = cli(
        "deploy",
        "canary",
        "fraud-api",
        "--model",
        "fraud@2",
        "--steps",
        "10,50,100",
        "--interval",
        "30s",
        "--max-error-rate",
        "0.01",
        "--max-p99-ms",
        "50",
    )
    assert out.exit_code == 0, out.output
    assert "v1: 90%, v2: 10%" in out.output
    shown = json.loads(cli("deploy", "show", "fraud-api", "--json").output)
    assert shown["rollout"]["status"] == "running"
    assert shown["rollout"]["thresholds"]["max_p99_ms"] == 50
    status = cli("deploy", "status", "fraud-api")
    assert status.exit_code == 0 and "Rollout" in status.output and "running" in status.output
    assert cli("deploy", "rollback", "fraud-api").exit_code == 0
    shown = json.loads(cli("deploy", "show", "fraud-api", "--json").output)
    assert shown["rollout"]["status"] == "rolled_back"
    assert shown["routing"]["variants"] == [{"version": 1, "weight": 100.0, "role": "stable"}]
    out = cli(
        "deploy",
        "ab",
        "fraud-api",
        "--variants",
        "fraud@1:50,fraud@2:50",
        "--sticky-header",
        "X-User-Id",
    )
    assert out.exit_code == 0, out.output
    _traffic(home, "fraud-api")
    report = cli("deploy", "ab-report", "fraud-api")
    assert report.exit_code == 0, report.output
    assert "error_rate" in report.output and "Significant" in report.output
    data = json.loads(cli("deploy", "ab-report", "fraud-api", "--json").output)
    assert data["comparisons"][0]["significant"] is True
    status = json.loads(cli("deploy", "status", "fraud-api", "--json").output)
    assert {t["version"] for t in status["status"]["traffic"]} == {1, 2}
    assert sum(p["requests"] for p in status["timeline"]) == 600
    text = cli("deploy", "status", "fraud-api").output
    assert "10.00%" in text  # v2's error rate in the traffic table
    assert cli("deploy", "shadow", "fraud-api", "--percent", "0").exit_code == 0
    assert cli("deploy", "route", "fraud-api", "fraud@2").exit_code == 0
    out = cli("deploy", "feedback", "fraud-api", "--request-id", "r2-00ff", "--label", "1")
    assert out.exit_code == 0
    hist = cli("deploy", "history", "fraud-api")
    for action in ("create", "canary.start", "rollback", "ab", "shadow", "route"):
        assert action in hist.output
    events = json.loads(cli("deploy", "history", "fraud-api", "--json").output)
    assert [e["generation"] for e in events] == list(range(1, len(events) + 1))
    out = cli("deploy", "config", "fraud-api", "--set", "max_wait_ms=4", "--set", "batching=off")
    assert out.exit_code == 0, out.output
    assert cli("deploy", "rm", "fraud-api").exit_code == 0
    assert json.loads(cli("deploy", "ls", "--json").output) == []


def test_bad_input_exits_non_zero(cli: Invoke, home: Path) -> None:
    _models(home, n=1)
    cases = [
        (("deploy", "create", "x", "--model", "nope@1"), "nope"),
        (("deploy", "create", "x", "--model", "fraud@1", "--batching", "maybe"), "batching"),
        (("deploy", "status", "missing"), "missing"),
        (("deploy", "ab", "missing", "--variants", "fraud@1"), "REF:WEIGHT"),
    ]
    for args, needle in cases:
        out = cli(*args)
        assert out.exit_code != 0, args
        assert needle in out.output, out.output
    assert cli("deploy", "create", "x", "--model", "fraud@1").exit_code == 0
    for args, needle in [
        (("deploy", "canary", "x", "--model", "fraud@1"), "already the stable"),
        (("deploy", "canary", "x", "--model", "fraud@1", "--steps", "50,10"), "rise"),
        (("deploy", "canary", "x", "--model", "fraud@1", "--interval", "soon"), "interval"),
        (("deploy", "config", "x", "--set", "nonsense"), "KEY=VALUE"),
        (("deploy", "rollback", "x"), "no earlier"),
        (("deploy", "shadow", "x", "--percent", "10"), "--model"),
    ]:
        out = cli(*args)
        assert out.exit_code != 0 and needle in out.output, (args, out.output)
