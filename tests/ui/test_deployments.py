"""The deployment pages in a real browser: the list's split bars, a deployment's split,
live charts, A/B report and canary checks, and rollback through the button.

The seeded ``churn-live`` (A/B 70/30) gets traffic windows as a worker would report them,
so its charts and report have data; it is never changed (other tests read its split).
Changes happen on deployments of this module's own model: ``ui-rollback`` (v1, then
routed to v2) and ``ui-canary`` (a canary of v2 one step on, with a failed check).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlplane.db.engine import now_ms
from mlplane.services import Services
from mlplane.serving.stats import WindowStats
from tests.ui.conftest import ROOT, Seeded, chart_series, login

MODEL = "ui-deploy-model"
ROLLBACK = "ui-rollback"
CANARY = "ui-canary"
MINUTE = 60_000


def window(
    deployment_id: int,
    version: int,
    end: int,
    *,
    requests: int,
    errors: int = 0,
    latency_ms: float = 10.0,
    kind: str = "live",
) -> dict[str, Any]:
    """One worker's traffic window, in the format ``mlplane serve`` reports."""
    w = WindowStats()
    rng = np.random.default_rng(version * 1000 + end % 997)
    for i in range(requests):
        w.record(
            float(latency_ms * (0.5 + rng.random())),
            1,
            status=500 if i < errors else 200,
            predictions=[int(rng.random() < 0.3)],
        )
    return {
        "deployment_id": deployment_id,
        "version": version,
        "kind": kind,
        "worker": "ui-test-worker",
        "window_start": end - 10_000,
        "window_end": end,
        "stats": w.to_dict(),
    }


@dataclass
class Traffic:
    canary_checks: list[dict[str, Any]]


def seed_traffic(svc: Services, seeded: Seeded) -> Traffic:
    """Windows for churn-live over the last 30 minutes, this module's deployments, and a
    canary with one passed and one failed check. Idempotent per session: the HTTP tests
    and the browser tests share it."""
    if "ui-deployments" in seeded.extra:
        return seeded.extra["ui-deployments"]  # type: ignore[no-any-return]
    now = now_ms()
    live = svc.deployments.get(ROOT, seeded.deployment)
    # The A/B report counts traffic since the split began (at seeding): only the two
    # ``recent`` windows. The history before them ends before the split, however soon
    # after seeding this runs.
    split_at = svc.deployments.history(ROOT, seeded.deployment)[-1].time
    before = min(now, split_at) - 1
    windows = []
    for m in range(1, 31):
        end = before - (m - 1) * MINUTE
        windows.append(window(live.deployment_id, 1, end, requests=70, errors=m % 3))
        windows.append(window(live.deployment_id, 2, end, requests=30, errors=1, latency_ms=14))
    recent = max(now, split_at + 1)
    windows.append(window(live.deployment_id, 1, recent, requests=210, errors=2))
    windows.append(window(live.deployment_id, 2, recent, requests=90, errors=6, latency_ms=14))
    svc.deployments.record_windows(ROOT, windows)

    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] > 0).astype(int)
    example = pd.DataFrame(x[:3], columns=["a", "b"])
    for c in (1.0, 0.1):
        svc.registry.register(ROOT, MODEL, LogisticRegression(C=c).fit(x, y), input_example=example)
    svc.deployments.create(ROOT, ROLLBACK, f"{MODEL}@1")
    svc.deployments.set_split(ROOT, ROLLBACK, f"{MODEL}@2")

    d = svc.deployments.create(ROOT, CANARY, f"{MODEL}@1")
    svc.deployments.start_canary(
        ROOT,
        CANARY,
        f"{MODEL}@2",
        steps=(10, 50, 100),
        interval="60s",
        thresholds={"max_error_rate": 0.05, "max_p99_ms": 500, "min_requests": 20},
    )
    started = now_ms()
    first = started + MINUTE + 1_000
    svc.deployments.record_windows(
        ROOT,
        [
            window(d.deployment_id, 1, started + 30_000, requests=90),
            window(d.deployment_id, 2, started + 30_000, requests=30),
        ],
    )
    checks = svc.deployments.advance_rollouts(ROOT, now=first)
    second = first + MINUTE + 1_000
    svc.deployments.record_windows(
        ROOT,
        [
            window(d.deployment_id, 1, first + 30_000, requests=50),
            window(d.deployment_id, 2, first + 30_000, requests=50, errors=20),
        ],
    )
    checks += svc.deployments.advance_rollouts(ROOT, now=second)
    out = Traffic([c for c in checks if c["deployment"] == CANARY])
    seeded.extra["ui-deployments"] = out
    return out


@pytest.fixture(scope="module")
def traffic(seeded: Seeded) -> Traffic:
    return seed_traffic(seeded.svc, seeded)


def split_spans(page: Any, scope: str) -> list[tuple[str, str]]:
    """(label, width) of each segment of the split bar in ``scope``."""
    spans = page.locator(f"{scope} .split > span")
    return [
        (
            spans.nth(i).inner_text().strip(),
            spans.nth(i).evaluate("e => e.style.width"),
        )
        for i in range(spans.count())
    ]


def test_the_list_shows_each_split_mode_and_last_hours_traffic(
    page: Any, seeded: Seeded, traffic: Traffic
) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/deployments?project=default")
    row = page.locator("tr[data-deployment='churn-live']")
    assert row.count() == 1
    assert split_spans(page, "tr[data-deployment='churn-live']") == [
        ("v1 70%", "70%"),
        ("v2 30%", "30%"),
    ]
    assert row.locator(".mode").inner_text() == "ab"
    # 30 windows of 70 + 30 requests, each an hour old at most, and 300 since the split.
    assert row.locator(".requests").inner_text() == "3,300"
    assert row.locator(".error-rate").inner_text().endswith("%")
    canary = page.locator(f"tr[data-deployment='{CANARY}']")
    assert canary.locator(".rollout .badge").inner_text() == "running"
    assert canary.locator(".mode").inner_text() == "canary"
    page.click("text=churn-live")
    page.wait_for_url("**/ui/deployments/churn-live?project=default")


def test_a_viewer_sees_the_split_charts_and_ab_report_but_no_buttons(
    page: Any, seeded: Seeded, traffic: Traffic
) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/deployments/churn-live?project=default")
    assert split_spans(page, "#routing") == [("v1 70%", "70%"), ("v2 30%", "30%")]
    roles = page.locator("table.variants tbody tr td:nth-child(4)").all_inner_texts()
    assert roles == ["stable", "variant"]
    assert chart_series(page, "#chart-rps") == ["v1", "v2"]
    assert chart_series(page, "#chart-errors") == ["v1", "v2"]
    assert chart_series(page, "#chart-latency") == ["v1 p50", "v1 p99", "v2 p50", "v2 p99"]
    variants = page.locator("table.ab-variants tbody tr")
    assert variants.count() == 2
    assert [variants.nth(i).locator("td").nth(2).inner_text() for i in (0, 1)] == ["210", "90"]
    comparison = page.locator("table.ab-comparisons tr[data-metric='error_rate']")
    assert comparison.count() == 1
    cells = comparison.locator("td").all_inner_texts()
    assert cells[0] == "v2" and cells[5].startswith("[") and cells[7] in ("yes", "no")
    assert page.locator("form[action$='/rollback']").count() == 0
    assert page.locator("text=Rollback").count() == 0
    assert page.locator("table.history tbody tr").first.get_attribute("data-action") == "ab"


def test_the_window_picker_redraws_over_a_longer_window(
    page: Any, seeded: Seeded, traffic: Traffic
) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/deployments/churn-live?project=default")
    page.click(".window-picker >> text=24h")
    page.wait_for_url("**window=24h")
    assert page.locator(".window-picker a.active").inner_text() == "24h"
    assert chart_series(page, "#chart-rps") == ["v1", "v2"]
    response = page.goto("/ui/deployments/churn-live?project=default&window=2d")
    assert response is not None and response.status == 400


def test_the_charts_refresh_from_the_timeline_endpoint(
    page: Any, seeded: Seeded, traffic: Traffic
) -> None:
    login(page, seeded.tokens["viewer"], target=f"/ui/deployments/{ROLLBACK}?project=default")
    empty = page.locator("#chart-rps")
    page.wait_for_function("() => document.getElementById('chart-rps').dataset.rendered === '1'")
    assert empty.get_attribute("data-series") == "[]"  # no traffic yet
    assert empty.inner_text() == "No data to plot."
    d = seeded.svc.deployments.get(ROOT, ROLLBACK)
    seeded.svc.deployments.record_windows(
        ROOT, [window(d.deployment_id, 2, now_ms() - 5_000, requests=40)]
    )
    page.wait_for_function(
        "() => document.getElementById('live-charts').dataset.refreshed", timeout=40_000
    )
    assert chart_series(page, "#chart-rps") == ["v2"]
    assert page.locator("#live-charts").get_attribute("data-stale") is None


def test_a_canary_shows_its_steps_and_each_checks_criteria(
    page: Any, seeded: Seeded, traffic: Traffic
) -> None:
    assert [c["outcome"] for c in traffic.canary_checks] == ["step 1", "failed_check"]
    d = seeded.svc.deployments.get(ROOT, CANARY)
    mine = {"ready": True, "inflight": 3, "versions": [1, 2], "cold_start_ms": 850}
    seeded.svc.deployments.heartbeat_worker(
        ROOT,
        "ui-worker-1",
        pid=4242,
        host="node-a",
        state={"deployments": {str(d.deployment_id): mine}},
    )
    login(page, seeded.tokens["viewer"], target=f"/ui/deployments/{CANARY}?project=default")
    worker = page.locator("table.workers tbody tr").all_inner_texts()
    assert (
        len(worker) == 1 and "node-a" in worker[0] and "4242" in worker[0] and "1, 2" in worker[0]
    )
    assert "Step 2 of 3" in page.locator("#rollout .progress-text").inner_text()
    assert page.locator("#rollout .next-check").inner_text() != ""
    first, second = page.locator("li.step").nth(0), page.locator("li.step").nth(1)
    assert first.locator(".row .badge").first.inner_text() == "done"
    assert second.locator(".row .badge").first.inner_text() == "current"
    assert first.locator(".check").get_attribute("data-verdict") == "pass"
    assert second.locator(".check").get_attribute("data-verdict") == "fail"
    rows = {
        r[0]: r[1:]
        for r in (
            second.locator("table.criteria tbody tr").nth(i).locator("td").all_inner_texts()
            for i in range(second.locator("table.criteria tbody tr").count())
        )
    }
    assert rows["canary error rate"] == ["0.4", "<= 0.05", "fail"]
    assert rows["canary requests"] == ["50", ">= 20", "pass"]
    assert rows["canary p99 ms"][1:] == ["<= 500", "pass"]
    assert split_spans(page, "#routing") == [("v1 50%", "50%"), ("v2 50%", "50%")]
    assert page.locator("li.step").nth(2).locator(".row .badge").first.inner_text() == "pending"


def test_a_contributor_rolls_back_through_the_button(
    page: Any, seeded: Seeded, traffic: Traffic
) -> None:
    assert seeded.svc.deployments.get(ROOT, ROLLBACK).routing.stable == 2
    login(page, seeded.tokens["contributor"], target=f"/ui/deployments/{ROLLBACK}?project=default")
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.click("form[action$='/rollback'] button")
    page.wait_for_url("**done=rollback**")
    assert asked and "previous traffic split" in asked[0]
    assert page.locator(".notice").inner_text().startswith("Rolled back: now v1 100%")
    assert split_spans(page, "#routing") == [("v1 100%", "100%")]
    assert page.locator("table.history tbody tr").first.get_attribute("data-action") == "rollback"
    after = seeded.svc.deployments.get(ROOT, ROLLBACK)
    assert after.routing.stable == 1 and after.updated_by == "cora"


def test_a_contributor_sees_promote_and_abort_on_a_running_canary(
    page: Any, seeded: Seeded, traffic: Traffic
) -> None:
    login(page, seeded.tokens["contributor"], target=f"/ui/deployments/{CANARY}?project=default")
    assert page.locator(".actions button").all_inner_texts() == ["Promote now", "Abort canary"]
    confirm = page.locator("form[action$='/rollback']").get_attribute("data-confirm") or ""
    assert "back to v1" in confirm
    history = seeded.svc.deployments.history(ROOT, CANARY)
    assert json.dumps([e.action for e in history]) == json.dumps(
        ["create", "canary.start", "canary.step"]
    )


def test_a_contributor_aborts_a_canary_back_to_stable(page: Any, seeded: Seeded) -> None:
    name = "ui-canary-abort"
    svc = seeded.svc
    svc.deployments.create(ROOT, name, f"{MODEL}@1")
    svc.deployments.start_canary(ROOT, name, f"{MODEL}@2", steps=(25, 100))
    login(page, seeded.tokens["contributor"], target=f"/ui/deployments/{name}?project=default")
    assert split_spans(page, "#routing") == [("v1 75%", "75%"), ("v2 25%", "25%")]
    page.on("dialog", lambda d: d.accept())
    abort = page.locator("form[action$='/rollback'] button")
    assert abort.inner_text() == "Abort canary"
    abort.click()
    page.wait_for_url("**done=rollback**")
    assert split_spans(page, "#routing") == [("v1 100%", "100%")]
    assert page.locator("h1 .badge").last.inner_text() == "rolled_back"
    assert page.locator("#rollout .reason").inner_text() == "rolled back by cora"
    assert page.locator("text=Abort canary").count() == 0  # a plain Rollback again
    after = svc.deployments.get(ROOT, name)
    assert after.rollout is not None and after.rollout.status == "rolled_back"
    assert after.routing.mode == "single" and after.routing.stable == 1
