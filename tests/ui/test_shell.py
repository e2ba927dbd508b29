"""The UI's shell in a real browser: signing in and out, the overview, errors as pages."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import Seeded, login


def test_sign_in_lands_on_the_page_asked_for_and_sign_out_ends_the_session(
    page: Any, seeded: Seeded
) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/?project=default")
    assert page.url.endswith("/ui/?project=default")
    assert page.locator("header .user").inner_text() == "vic"
    assert page.locator("[data-section=models] .stat").inner_text() == "1"
    assert page.locator("[data-section=datasets] .stat").inner_text() == "1"
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
    login(page, seeded.tokens["admin"])
    rows = page.locator("table.data tbody tr")
    assert rows.count() == 3
    assert page.locator("table.data").inner_text().count(seeded.experiment) == 3
    assert page.locator("nav >> text=Audit").count() == 1  # a platform admin sees the log


def test_an_unknown_page_is_a_page_not_json(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"])
    response = page.goto("/ui/no-such-page")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert page.locator("nav >> text=Audit").count() == 0  # a viewer does not
