"""Deployments through the service on a real embedded store: traffic changes, history,
canary rollouts judged on recorded traffic windows, A/B reports, permissions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select

from mlplane.config import load_settings
from mlplane.db.engine import now_ms
from mlplane.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PermissionDenied
from mlplane.security import Principal, local_admin
from mlplane.security.tables import AuditEventRow
from mlplane.services import Services
from mlplane.serving.stats import WindowStats

ME = local_admin("tester")
SERVE = Principal("mlplane-serve", is_platform_admin=True, source="serve")


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    s = Services.from_settings(load_settings(home=tmp_path / "home"))
    yield s
    s.close()


def _register(svc: Services, n: int = 3, name: str = "fraud") -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] > 0).astype(int)
    for i in range(n):
        model = LogisticRegression(C=1.0 + i).fit(x, y)
        svc.registry.register(ME, name, model, input_example=x[:5], metrics={"auc": 0.9 + i / 100})
    svc.registry.set_alias(ME, name, "champion", 1)


def _window(
    svc: Services,
    deployment_id: int,
    version: int,
    *,
    n: int,
    errors: int = 0,
    latency: float = 5.0,
    outputs: float = 0.3,
    end: int | None = None,
) -> None:
    w = WindowStats()
    for i in range(n):
        w.record(
            latency,
            1,
            status=500 if i < errors else 200,
            predictions=np.array([outputs + 0.01 * (i % 10)]),
        )
    end = end or now_ms()
    svc.deployments.record_windows(
        SERVE,
        [
            {
                "deployment_id": deployment_id,
                "version": version,
                "kind": "live",
                "worker": "w1",
                "window_start": end - 1000,
                "window_end": end,
                "stats": w.to_dict(),
            }
        ],
    )


def _actions(svc: Services) -> list[str]:
    with svc.db.read() as s:
        return list(s.scalars(select(AuditEventRow.action).order_by(AuditEventRow.seq)))


def test_create_read_and_history(svc: Services) -> None:
    _register(svc)
    d = svc.deployments.create(ME, "fraud-api", "fraud@champion", config={"max_wait_ms": 3})
    assert (d.model, d.routing.stable, d.routing.mode, d.generation) == ("fraud", 1, "single", 1)
    assert d.config.max_wait_ms == 3 and d.config.batching == "auto"
    assert [x.name for x in svc.deployments.list_deployments(ME)] == ["fraud-api"]
    with pytest.raises(AlreadyExists):
        svc.deployments.create(ME, "fraud-api", "fraud@1")
    with pytest.raises(NotFound, match="nope"):
        svc.deployments.create(ME, "other", "nope@1")
    with pytest.raises(InvalidInput, match="deployment name"):
        svc.deployments.create(ME, "bad name!", "fraud@1")
    with pytest.raises(InvalidInput, match="unknown deployment setting"):
        svc.deployments.create(ME, "x", "fraud@1", config={"max_wiat_ms": 3})
    with pytest.raises(NotFound, match="fraud-api"):
        svc.deployments.get(ME, "fraud-ap")
    svc.deployments.set_shadow(ME, "fraud-api", "fraud@2", 20)
    d = svc.deployments.start_ab(
        ME, "fraud-api", [("fraud@1", 50), ("fraud@3", 50)], sticky_header="X-User-Id"
    )
    assert d.routing.percents() == {1: 50.0, 3: 50.0} and d.routing.shadow.version == 2
    assert d.routing.sticky_header == "X-User-Id" and d.generation == 3
    back = svc.deployments.rollback(ME, "fraud-api")
    assert back.routing.percents() == {1: 100.0} and back.routing.shadow.version == 2
    history = svc.deployments.history(ME, "fraud-api")
    assert [e.action for e in history] == ["create", "shadow", "ab", "rollback"]
    assert [e.generation for e in history] == [1, 2, 3, 4]
    assert {
        "deployment.create",
        "deployment.shadow",
        "deployment.ab",
        "deployment.rollback",
    } <= set(_actions(svc))
    with pytest.raises(InvalidInput, match="serves 'fraud'"):
        svc.deployments.set_split(ME, "fraud-api", "other@1")
    with pytest.raises(InvalidInput, match="already answers"):
        svc.deployments.set_shadow(ME, "fraud-api", "fraud@1", 10)


def test_canary_promotes_after_every_step(svc: Services) -> None:
    _register(svc)
    d = svc.deployments.create(ME, "api", "fraud@champion")
    d = svc.deployments.start_canary(
        ME,
        "api",
        "fraud@2",
        steps=[20, 100],
        interval="1s",
        thresholds={"max_error_rate": 0.05, "max_p99_ms": 50, "min_requests": 20},
    )
    assert d.routing.percents() == {1: 80.0, 2: 20.0} and d.routing.mode == "canary"
    with pytest.raises(Conflict, match="canary rollout running"):
        svc.deployments.start_ab(ME, "api", [("fraud@1", 50), ("fraud@2", 50)])
    start = d.rollout.started_at
    assert svc.deployments.advance_rollouts(SERVE, now=start + 500) == []  # not due yet
    _window(svc, d.deployment_id, 1, n=100, end=start + 900)
    _window(svc, d.deployment_id, 2, n=30, end=start + 900)
    decided = svc.deployments.advance_rollouts(SERVE, now=start + 1000)
    assert decided[0]["verdict"] == "pass" and decided[0]["outcome"] == "step 1"
    d = svc.deployments.get(ME, "api")
    assert d.routing.percents() == {1: 0.0, 2: 100.0}
    # A fresh service on the same store resumes the rollout where it was.
    again = Services.from_settings(svc.settings)
    try:
        _window(again, d.deployment_id, 1, n=40, end=start + 1800)
        _window(again, d.deployment_id, 2, n=40, end=start + 1800)
        decided = again.deployments.advance_rollouts(SERVE, now=start + 2100)
    finally:
        again.close()
    assert decided[0]["outcome"] == "promoted"
    d = svc.deployments.get(ME, "api")
    assert d.routing.percents() == {2: 100.0} and d.rollout.status == "promoted"
    assert svc.registry.get_version(ME, "fraud@champion").version == 2
    assert len(d.rollout.checks) == 2
    assert [e.action for e in svc.deployments.history(ME, "api")] == [
        "create",
        "canary.start",
        "canary.step",
        "canary.promote",
    ]
    assert "deployment.canary.check" in _actions(svc)


def test_failing_canary_rolls_back_at_the_failure_limit(svc: Services) -> None:
    _register(svc)
    d = svc.deployments.create(ME, "api", "fraud@champion")
    d = svc.deployments.start_canary(
        ME,
        "api",
        "fraud@2",
        steps=[10, 50, 100],
        interval=1,
        thresholds={"max_error_rate": 0.05, "min_requests": 20},
        failure_limit=2,
    )
    t = d.rollout.started_at
    for i in (1, 2):
        _window(svc, d.deployment_id, 1, n=200, end=t + i * 1000 - 100)
        _window(svc, d.deployment_id, 2, n=40, errors=10, end=t + i * 1000 - 100)
        decided = svc.deployments.advance_rollouts(SERVE, now=t + i * 1000 + 10 * (i - 1))
        t += 10 * (i - 1)
    assert decided[0]["outcome"] == "rolled_back"
    d = svc.deployments.get(ME, "api")
    assert d.routing.percents() == {1: 100.0} and d.rollout.status == "rolled_back"
    assert "error rate" in d.rollout.reason
    assert svc.registry.get_version(ME, "fraud@champion").version == 1


def test_too_little_traffic_waits(svc: Services) -> None:
    _register(svc)
    d = svc.deployments.create(ME, "api", "fraud@champion")
    d = svc.deployments.start_canary(
        ME, "api", "fraud@2", steps=[50, 100], interval=1, thresholds={"min_requests": 50}
    )
    t = d.rollout.started_at
    _window(svc, d.deployment_id, 2, n=3, end=t + 500)
    assert svc.deployments.advance_rollouts(SERVE, now=t + 1000)[0]["outcome"] == "waiting"
    d = svc.deployments.get(ME, "api")
    assert d.rollout.status == "running" and d.rollout.step_index == 0


def test_refused_promotion_blocks_and_returns_to_stable(svc: Services) -> None:
    _register(svc)
    svc.registry.set_policy(ME, "fraud", {"rules": ["auc >= 0.99"]})
    d = svc.deployments.create(ME, "api", "fraud@champion")
    d = svc.deployments.start_canary(
        ME, "api", "fraud@2", steps=[100], interval=1, thresholds={"min_requests": 10}
    )
    t = d.rollout.started_at
    _window(svc, d.deployment_id, 1, n=20, end=t + 500)
    _window(svc, d.deployment_id, 2, n=20, end=t + 500)
    assert svc.deployments.advance_rollouts(SERVE, now=t + 1000)[0]["outcome"] == "blocked"
    d = svc.deployments.get(ME, "api")
    assert d.rollout.status == "blocked" and "auc" in d.rollout.reason
    assert d.routing.percents() == {1: 100.0}
    with pytest.raises(Conflict, match="auc"):
        svc.deployments.promote(ME, "api")


def test_promotion_acts_with_the_starters_roles_as_they_are_now(svc: Services) -> None:
    _register(svc)
    ids = svc.identities
    ids.create_identity(ME, "cora")
    ids.grant(ME, "cora", "default", "approver")
    cora = ids.authenticate(ids.create_token(ME, "cora").secret, source="127.0.0.1")
    d = svc.deployments.create(cora, "api", "fraud@champion")
    d = svc.deployments.start_canary(
        cora, "api", "fraud@2", steps=[100], interval=1, thresholds={"min_requests": 10}
    )
    ids.grant(ME, "cora", "default", "contributor")  # no longer an approver
    t = d.rollout.started_at
    _window(svc, d.deployment_id, 1, n=20, end=t + 500)
    _window(svc, d.deployment_id, 2, n=20, end=t + 500)
    assert svc.deployments.advance_rollouts(SERVE, now=t + 1000)[0]["outcome"] == "blocked"
    assert "approve" in svc.deployments.get(ME, "api").rollout.reason
    assert svc.registry.get_version(ME, "fraud@champion").version == 1


def test_permissions(svc: Services) -> None:
    _register(svc)
    ids = svc.identities
    ids.create_identity(ME, "vic")
    ids.grant(ME, "vic", "default", "viewer")
    vic = ids.authenticate(ids.create_token(ME, "vic").secret, source="127.0.0.1")
    svc.deployments.create(ME, "api", "fraud@1")
    assert svc.deployments.get(vic, "api").name == "api"
    for attempt in (
        lambda: svc.deployments.create(vic, "mine", "fraud@1"),
        lambda: svc.deployments.rollback(vic, "api"),
        lambda: svc.deployments.record_feedback(vic, "api", "r1-ab", 1),
        lambda: svc.deployments.generations(vic),
    ):
        with pytest.raises(PermissionDenied):
            attempt()
    assert "deployment.create" in _actions(svc)


def test_ab_report_compares_variants_with_feedback(svc: Services) -> None:
    _register(svc)
    d = svc.deployments.create(ME, "api", "fraud@1")
    d = svc.deployments.start_ab(ME, "api", [("fraud@1", 50), ("fraud@2", 50)])
    _window(svc, d.deployment_id, 1, n=400, errors=4)
    _window(svc, d.deployment_id, 2, n=400, errors=40)
    for i in range(300):
        svc.deployments.record_feedback(ME, "api", f"r1-{i:04x}", int(i % 2 == 0))
        svc.deployments.record_feedback(ME, "api", f"r2-{i:04x}", int(i % 10 < 8))
    svc.deployments.record_feedback(ME, "api", "r2-0000", 1)  # replaces, does not add
    report = svc.deployments.ab_report(ME, "api")
    by_version = {v["version"]: v for v in report["variants"]}
    assert by_version[1]["feedback"] == 300 and by_version[2]["requests"] == 400
    assert by_version[1]["mean_outcome"] == pytest.approx(0.5)
    metrics = {c["metric"]: c for c in report["comparisons"]}
    assert metrics["error_rate"]["significant"] and metrics["error_rate"]["difference"] > 0
    assert metrics["outcome"]["significant"] and 0 < metrics["outcome"]["p_value"] < 0.05
    assert json.dumps(report)  # JSON-safe for the CLI and the server


def test_configure_and_delete(svc: Services) -> None:
    _register(svc, n=1)
    svc.deployments.create(ME, "api", "fraud@1")
    d = svc.deployments.configure(ME, "api", {"capture_percent": 10, "batching": "off"})
    assert (d.config.capture_percent, d.config.batching, d.generation) == (10, "off", 2)
    with pytest.raises(InvalidInput, match="batching"):
        svc.deployments.configure(ME, "api", {"batching": "sometimes"})
    assert svc.deployments.generations(SERVE) == {d.deployment_id: 2}
    assert [x.name for x in svc.deployments.active(SERVE)] == ["api"]
    svc.deployments.delete(ME, "api")
    assert svc.deployments.generations(SERVE) == {}
    with pytest.raises(Conflict, match="no earlier"):
        svc.deployments.create(ME, "api", "fraud@1")
        svc.deployments.rollback(ME, "api")


@pytest.mark.parametrize(
    ("since_s", "bucket_s", "says"),
    [
        (3600, 0, "at least 1 second"),
        (3600, 1e-6, "at least 1 second"),  # once a zero-length bucket, a 500
        (-1, 60, "since above 0"),
        (float("inf"), 60, "finite"),
        (3600, float("nan"), "finite"),
        (1e300, 60, "at most 400 days"),
        (86_400 * 30, 1, "100,000 buckets"),
    ],
)
def test_a_timeline_refuses_spans_and_buckets_it_cannot_compute(
    svc: Services, since_s: float, bucket_s: float, says: str
) -> None:
    _register(svc, 1)
    svc.deployments.create(ME, "d", "fraud@1")
    with pytest.raises(InvalidInput, match=says):
        svc.deployments.timeline(ME, "d", since_s=since_s, bucket_s=bucket_s)
    assert svc.deployments.timeline(ME, "d", since_s=3600, bucket_s=1) == []
