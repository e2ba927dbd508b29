"""The dataset pages in a real browser: the list, a dataset's versions and sections (schema,
profile charts, quality, PII with values hidden, files, lineage) and the diff of two
versions, over the session's seeded store plus a project of this module's own."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from mlplane.security import local_admin
from tests.ui.conftest import Seeded, chart_series, login

ROOT = local_admin("root")
EXTRA = "ui-data"
"""This module's project: the session's ``default`` must keep its one dataset (other tests
count it)."""
CONTRACT = {
    "columns": {
        "id": {"not_null": True, "unique": True},
        "amount": {"between": {"min": 0, "max": 1000}},
        "country": {"in_set": {"values": ["US", "DE"], "severity": "warn"}},
    },
    "table": {"row_count": {"min": 10}},
}


def _customers(path: Path, rows: int, *, score: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "email", "amount", "country", *(["score"] if score else [])])
        for i in range(rows):
            # v2 writes amounts as decimals: the column's type changes from int64 to double.
            amount = f"{i % 90}.5" if score else str(i % 90)
            extra = [str(i % 7)] if score else []
            w.writerow([i, f"client{i}@example.org", amount, ("US", "DE", "FR")[i % 3], *extra])
    return path


@pytest.fixture(scope="module")
def extra(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``customers`` (v1 under a contract with a failing warning and e-mails hashed; v2
    with a column added and one retyped) and ``customers-sample`` derived from v1."""
    svc, src = seeded.svc, tmp_path_factory.mktemp("ui-datasets")
    svc.data.add(
        ROOT,
        "customers",
        _customers(src / "a" / "customers.csv", 120, score=False),
        project=EXTRA,
        contract=CONTRACT,
        pii={"email": "hash"},
    )
    svc.data.add(
        ROOT, "customers", _customers(src / "b" / "customers.csv", 150, score=True), project=EXTRA
    )
    svc.data.sample(ROOT, "customers@1", fraction=0.5, project=EXTRA)
    return {"project": EXTRA}


def test_the_list_shows_the_dataset_with_its_badges_and_links_to_it(
    page: Any, seeded: Seeded
) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/datasets?project=default")
    row = page.locator("tr[data-dataset=churn]")
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "2" and cells[2] == "300"  # newest version, its rows
    assert row.locator(".pii").inner_text() == "email"
    assert row.locator(".quality").inner_text() == "no contract"
    row.locator("a", has_text="churn").click()
    page.wait_for_url("**/ui/datasets/churn?project=default")
    assert page.locator("h1").inner_text().startswith("churn")


def test_a_dataset_shows_versions_schema_profile_pii_and_lineage(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/datasets/churn?project=default")
    assert page.locator("#versions tbody tr").count() == 2
    assert page.locator("#versions tr.current").get_attribute("data-version") == "2"
    assert page.locator("#rows").inner_text() == "300"
    columns = page.locator("table.schema tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.column)"
    )
    assert columns == ["tenure", "charges", "plan", "email", "churned"]
    assert chart_series(page, ".chart-box[data-column=charges] .chart.histogram") == ["rows"]
    y_min = page.evaluate(
        "() => document.querySelector('.chart-box[data-column=charges] .chart')._chart.scales.y.min"
    )
    assert y_min == 0  # bars start at zero, so small differences are not exaggerated
    assert chart_series(page, ".chart-box[data-column=plan] .chart.top-values") == ["rows"]
    # The e-mail column has neither a chart nor values on the page.
    assert page.locator(".chart-box[data-column=email]").count() == 0
    pii = page.locator("#pii-findings tr[data-column=email]")
    assert pii.count() == 1 and "email (300)" in pii.inner_text()
    assert "not handled" in pii.inner_text()
    text = page.locator("body").inner_text()
    assert "user1@example.com" not in text and "@example.com" not in text
    assert "@example.com" not in page.content()  # not in attributes or chart data either
    runs = page.locator("#lineage-runs tbody tr")
    assert runs.count() == 3
    assert set(runs.evaluate_all("rows => rows.map(r => r.dataset.run)")) == set(
        seeded.runs.values()
    )
    link = page.locator(f"#lineage-runs a[href='/ui/runs/{seeded.runs['run-a']}']")
    assert link.inner_text() == "run-a"
    models = page.locator("#lineage-models a").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    )
    assert models == ["/ui/models/churn-model?version=1", "/ui/models/churn-model?version=2"]


def test_an_older_version_is_shown_when_asked_for(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/datasets/churn?project=default")
    page.click("#versions a >> text=1")
    page.wait_for_url("**version=1")
    assert page.locator("#rows").inner_text() == "200"
    assert page.locator("#versions tr.current").get_attribute("data-version") == "1"
    assert page.locator("#lineage-runs").count() == 0  # the runs read version 2


def test_the_diff_shows_the_row_change_and_both_histograms(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/datasets/churn?project=default")
    page.select_option("#diff-a", "1")
    page.select_option("#diff-b", "2")
    page.click("#diff-picker button[type=submit]")
    page.wait_for_url("**/ui/datasets/churn/diff?**")
    assert page.locator("#row-change").inner_text().startswith("200 → 300")
    assert "(+100)" in page.locator("#row-change").inner_text()
    assert page.locator("#file-diff tr.diff-chg").inner_text().endswith("churn.csv")
    assert chart_series(page, "#overlay") == ["churn@1", "churn@2"]
    assert page.locator("#overlay").get_attribute("data-column") == "tenure"
    page.select_option("#column", "churn.csv:charges")  # the select submits itself
    page.wait_for_url("**column=churn.csv%3Acharges**")
    assert page.locator("#overlay").get_attribute("data-column") == "charges"
    assert chart_series(page, "#overlay") == ["churn@1", "churn@2"]
    assert "@example.com" not in page.content()


def test_quality_results_hashed_pii_and_a_derived_version(
    page: Any, seeded: Seeded, extra: dict[str, str]
) -> None:
    login(page, seeded.tokens["admin"], target=f"/ui/datasets?project={EXTRA}")
    assert page.locator("tr[data-dataset=customers] .quality").inner_text() == "warn (1)"
    page.goto(f"/ui/datasets/customers?project={EXTRA}&version=1")
    results = page.locator("#quality-results tbody tr")
    assert results.count() == 5
    warned = page.locator("#quality-results tr[data-kind=in_set]")
    assert "warn" in warned.inner_text() and "40" in warned.inner_text()  # the FR rows
    assert page.locator("#quality-results .status-fail").count() == 0
    assert "pseudonymized" in page.locator("#pii-findings tr[data-column=email]").inner_text()
    assert page.locator("#derived a").inner_text() == "customers-sample@1"
    page.click("#derived a")
    page.wait_for_url("**/ui/datasets/customers-sample?**")
    assert page.locator("#upstream a").inner_text() == "customers@1"
    assert "fraction=0.5" in page.locator("#derivation").inner_text()
    assert "@example.org" not in page.content()


def test_the_diff_marks_added_and_retyped_columns(
    page: Any, seeded: Seeded, extra: dict[str, str]
) -> None:
    login(page, seeded.tokens["admin"], target=f"/ui/datasets/customers/diff?project={EXTRA}")
    schema = page.locator("table.schema-diff")
    assert schema.locator("tr.diff-add[data-column=score]").count() == 1
    retyped = schema.locator("tr.diff-chg[data-column=amount]")
    assert "int64" in retyped.inner_text() and "double" in retyped.inner_text()
    assert page.locator("#row-change").inner_text().startswith("120 → 150")
    assert chart_series(page, "#overlay") == ["customers@1", "customers@2"]
