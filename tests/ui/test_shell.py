"""The UI's shell in a real browser: signing in and out, the overview, errors as pages."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tests.ui.conftest import ROOT, Seeded, login


def test_sign_in_lands_on_the_page_asked_for_and_sign_out_ends_the_session(
    page: Any, seeded: Seeded
) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/?project=default")
    assert page.url.endswith("/ui/?project=default")
    assert page.locator("header .user").inner_text() == "vic"
    # Other tests of this session add to the store: the counts are the service's, now.
    models = len(seeded.svc.registry.list_models(ROOT))
    datasets = len(seeded.svc.data.list_datasets(ROOT))
    assert page.locator("[data-section=models] .stat").inner_text() == str(models)
    assert page.locator("[data-section=datasets] .stat").inner_text() == str(datasets)
    page.click("text=Sign out")
    page.wait_for_url("**/ui/login")
    page.goto("/ui/")
    assert "/ui/login" in page.url  # the cookie is gone


def test_a_wrong_token_is_refused_on_the_login_page(page: Any, seeded: Seeded) -> None:
    page.goto("/ui/login")
    page.fill("#token", "mlp_" + "x" * 43)
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text().startswith("Not signed in")
    assert "/ui/login" in page.url


def test_the_overview_lists_the_latest_runs_and_links_to_them(page: Any, seeded: Seeded) -> None:
    eid = seeded.svc.tracking.create_experiment(ROOT, f"shell-latest-{uuid.uuid4().hex[:6]}")
    later = int(time.time() * 1000) + 10 * 365 * 86_400_000  # newer than any other run
    newest = seeded.svc.tracking.create_run(ROOT, eid, run_name="newest", start_time=later)
    login(page, seeded.tokens["admin"])
    rows = page.locator("table.data tbody tr")
    experiments = seeded.svc.tracking.search_experiments(ROOT, project="default").experiments
    latest = seeded.svc.tracking.search_runs(
        ROOT, [e.experiment_id for e in experiments], max_results=10
    ).runs
    assert len(latest) >= 4  # the three seeded runs and this one, and other tests' runs
    assert rows.count() == len(latest)  # the latest ten at most, as the store orders them
    first = rows.first.locator("a").first
    assert first.inner_text() == "newest"
    assert first.get_attribute("href") == f"/ui/runs/{newest.info.run_id}"
    assert page.locator("nav >> text=Audit").count() == 1  # a platform admin sees the log


def test_an_unknown_page_is_a_page_not_json(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"])
    response = page.goto("/ui/no-such-page")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert page.locator("nav >> text=Audit").count() == 0  # a viewer does not
