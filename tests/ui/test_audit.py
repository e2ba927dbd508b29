"""The audit log page in a real browser: platform admins only, filters, verification."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import ROOT, Seeded, login

CHANGES = 120
"""More audited changes than a page holds (100)."""
OWN = "ui-audit-churn"


@pytest.fixture(scope="module")
def changes(seeded: Seeded) -> int:
    """A deployment of this module's own, configured ``CHANGES`` times: each change is one
    ``deployment.configure`` event."""
    svc = seeded.svc
    if OWN not in {d.name for d in svc.deployments.list_deployments(ROOT)}:
        svc.deployments.create(ROOT, OWN, f"{seeded.model}@1")
        for i in range(CHANGES):
            svc.deployments.configure(ROOT, OWN, {"max_wait_ms": float(i % 10)})
    return CHANGES


def actions(page: Any) -> list[str]:
    return page.locator("table.audit-events tbody tr .action").all_inner_texts()


def seqs(page: Any) -> list[int]:
    cells = page.locator("table.audit-events tbody tr td:first-child").all_inner_texts()
    return [int(c.replace(",", "")) for c in cells]


def test_an_admin_filters_the_log_by_action(page: Any, seeded: Seeded, changes: int) -> None:
    login(page, seeded.tokens["admin"], target="/ui/audit")
    everything = actions(page)
    assert len(everything) == 100
    assert seqs(page) == sorted(seqs(page), reverse=True)  # newest first
    page.fill("#action", "deployment.ab")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**action=deployment.ab**")
    narrowed = actions(page)
    assert narrowed == ["deployment.ab"]  # the seeded A/B split, once
    row = page.locator("table.audit-events tbody tr").last
    assert row.locator("td").nth(2).inner_text() == "root"
    assert row.locator("td").nth(5).inner_text() == "default"
    assert row.locator("td .badge").inner_text() == "allowed"
    row.locator("details summary").click()
    assert '"split"' in row.locator("details pre").inner_text()


def test_pages_go_from_the_newest_back(page: Any, seeded: Seeded, changes: int) -> None:
    login(page, seeded.tokens["admin"], target="/ui/audit?action=deployment.configure")
    first = seqs(page)
    assert len(first) == 100 and set(actions(page)) == {"deployment.configure"}
    page.click("a[rel=next]")
    page.wait_for_url("**page=2**")
    second = seqs(page)
    assert len(second) >= changes - 100 and max(second) < min(first)
    assert page.locator("a[rel=next]").count() == 0
    page.click("a[rel=prev]")
    page.wait_for_url("**page=1**")
    assert seqs(page) == first


def test_free_text_filters_details_too_and_pages(page: Any, seeded: Seeded, changes: int) -> None:
    # The deployment's name is in each event's resource; "max_wait_ms" only in details.
    login(page, seeded.tokens["admin"], target=f"/ui/audit?q={OWN}")
    assert len(seqs(page)) == 100
    page.click("a[rel=next]")
    page.wait_for_url("**page=2**")
    texts = page.locator("table.audit-events tbody tr").all_inner_texts()
    assert texts and all(OWN in t for t in texts)
    page.goto("/ui/audit?q=max_wait_ms&project=default")
    assert 0 < len(seqs(page)) <= 100
    assert set(actions(page)) == {"deployment.configure"}


def test_a_denied_request_is_in_the_log_as_denied(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"])
    response = page.goto("/ui/audit")
    assert response is not None and response.status == 403
    assert page.locator("h1").inner_text() == "Not allowed"
    assert "platform admin" in page.locator("[role=alert]").inner_text()

    admin = page.context.browser.new_context(base_url=page.url.split("/ui/")[0])
    other = admin.new_page()
    try:
        login(other, seeded.tokens["admin"], target="/ui/audit?actor=vic&action=audit.read")
        row = other.locator("table.audit-events tbody tr").first
        assert row.locator("td .badge").inner_text() == "denied"
    finally:
        admin.close()


def test_verify_runs_on_the_button_and_reports_ok(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["admin"], target="/ui/audit")
    assert "not verified" in page.locator("#verify-status").inner_text()
    page.click("button.verify-button")
    page.wait_for_url("**/ui/audit/verify")
    status = page.locator("#verify-status")
    assert status.get_attribute("data-ok") == "1"
    assert status.inner_text().startswith("OK up to seq ")
    head = int(status.inner_text().removeprefix("OK up to seq ").replace(",", ""))
    assert head >= max(seqs(page))
