"""The experiments pages in a real Chromium: the experiment list, the run table (sort, filter,
select, page), a run's page with its chart, and the previews of its artifacts."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mlplane.security import local_admin
from mlplane.tracking.entities import MetricColumns
from tests.ui.conftest import Seeded, chart_series, login

ROOT = local_admin("root")
MANY = 120


@pytest.fixture(scope="module")
def many(seeded: Seeded) -> dict[str, Any]:
    """An experiment of its own with MANY runs, each with a distinct ``score``."""
    svc = seeded.svc.tracking
    eid = svc.create_experiment(ROOT, f"e2e-many-{uuid.uuid4().hex[:6]}")
    ids = []
    for i in range(MANY):
        run = svc.create_run(ROOT, eid, run_name=f"m-{i:03d}", start_time=1_765_100_000_000 + i)
        rid = run.info.run_id
        svc.log_batch(
            ROOT,
            rid,
            metrics=MetricColumns(["score"], [float((i * 37) % MANY)], [1], [0]),
            params={"i": str(i)},
        )
        ids.append(rid)
    return {"experiment_id": eid, "runs": ids}


@pytest.fixture(scope="module")
def scratch(seeded: Seeded) -> dict[str, str]:
    """A run that tests may delete and restore, away from the shared seeded runs."""
    svc = seeded.svc.tracking
    eid = svc.create_experiment(ROOT, f"e2e-scratch-{uuid.uuid4().hex[:6]}")
    rid = svc.create_run(ROOT, eid, run_name="scratch-run").info.run_id
    return {"experiment_id": eid, "run_id": rid}


def _names(page: Any) -> list[str]:
    return list(page.locator("#runs tbody td.name a").all_inner_texts())


def _rows(page: Any) -> list[str]:
    return [r.get_attribute("data-run") for r in page.locator("#runs tbody tr").all()]


def _follow(page: Any, selector: str) -> Any:
    with page.expect_navigation() as nav:
        page.click(selector)
    return nav.value


def test_experiment_list_filters_by_name_and_links_to_runs(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"], "/ui/experiments")
    table = page.locator("#experiments")
    assert seeded.experiment in table.inner_text()
    page.fill("#q", seeded.experiment[-6:])
    _follow(page, "form[role=search] button[type=submit]")
    assert page.locator("#experiments tbody tr").count() == 1
    page.fill("#q", "no-such-experiment-here")
    _follow(page, "form[role=search] button[type=submit]")
    assert page.locator("#experiments").count() == 0
    assert "no-such-experiment-here" in page.locator("main").inner_text()
    page.goto("/ui/experiments")
    _follow(page, f'#experiments tr[data-experiment="{seeded.experiment_id}"] a')
    assert page.url.endswith(f"/ui/experiments/{seeded.experiment_id}")


def test_run_table_sorts_on_the_server(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"], f"/ui/experiments/{seeded.experiment_id}")
    assert set(_rows(page)) == set(seeded.runs.values())
    headers = page.locator("#runs thead").inner_text()
    assert "lr" in headers and "loss" in headers
    assert _names(page) == ["run-c", "run-b", "run-a"]  # newest first by default
    assert page.locator('#runs th[data-key="attributes.start_time"] a.sorted').count() == 1

    _follow(page, '#runs th[data-key="metrics.accuracy"] a')  # a metric: best first
    assert "order=metrics.accuracy+DESC" in page.url
    assert _names(page) == ["run-a", "run-b", "run-c"]
    _follow(page, '#runs th[data-key="metrics.loss"] a')
    assert _names(page) == ["run-c", "run-b", "run-a"]
    _follow(page, '#runs th[data-key="metrics.loss"] a')  # the same header again: flipped
    assert _names(page) == ["run-a", "run-b", "run-c"]
    assert page.locator('#runs th[data-key="metrics.loss"] a.sorted.asc').count() == 1
    _follow(page, '#runs th[data-key="params.optimizer"] a')
    assert _names(page)[-1] == "run-c"  # adam, adam, sgd


def test_run_table_filters_and_explains_a_bad_filter(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"], f"/ui/experiments/{seeded.experiment_id}")
    page.fill("#filter", "metrics.loss < 0.5")
    _follow(page, "#run-search button[type=submit]")
    assert sorted(_names(page)) == ["run-a", "run-b"]
    page.fill("#filter", "metrics.loss < 0.5 and params.lr = '0.01'")
    _follow(page, "#run-search button[type=submit]")
    assert _names(page) == ["run-b"]

    page.fill("#filter", "metrics.loss <")
    response = _follow(page, "#run-search button[type=submit]")
    assert response.status == 400
    assert "expected a number" in page.locator("#search-error").inner_text()
    assert page.input_value("#filter") == "metrics.loss <"  # kept, to fix it
    assert page.locator("#runs").count() == 0


def test_columns_chooser_and_compare_selection(page: Any, seeded: Seeded) -> None:
    login(page, seeded.tokens["viewer"], f"/ui/experiments/{seeded.experiment_id}")
    page.click("details.columns summary")
    page.uncheck('#columns input[name=params][value="depth"]')
    page.uncheck('#columns input[name=metrics][value="accuracy"]')
    _follow(page, "#columns button[type=submit]")
    keys = page.locator("#runs thead th[data-key]").evaluate_all(
        "ths => ths.map(t => t.dataset.key)"
    )
    assert "params.depth" not in keys and "metrics.accuracy" not in keys
    assert "params.lr" in keys and "metrics.loss" in keys
    _follow(page, '#runs th[data-key="metrics.loss"] a')  # sorting keeps the columns
    assert page.locator('#runs th[data-key="params.depth"]').count() == 0

    compare = page.locator("#compare")
    assert compare.get_attribute("aria-disabled") == "true"
    a, b = seeded.runs["run-a"], seeded.runs["run-b"]
    page.check(f'input[data-select="run"][value="{a}"]')
    assert compare.get_attribute("aria-disabled") == "true"  # one run compares to nothing
    page.check(f'input[data-select="run"][value="{b}"]')
    href = compare.get_attribute("href") or ""
    assert href.startswith("/ui/compare?runs=") and a in href and b in href
    assert compare.locator("[data-count]").inner_text() == "2"
    page.check('input[data-select-all="run"]')
    assert compare.locator("[data-count]").inner_text() == "3"


def test_run_page_charts_metrics_and_previews_artifacts(page: Any, seeded: Seeded) -> None:
    run = seeded.runs["run-a"]
    login(page, seeded.tokens["viewer"], f"/ui/experiments/{seeded.experiment_id}")
    _follow(page, f'#runs tr[data-run="{run}"] td.name a')
    assert page.url.endswith(f"/ui/runs/{run}")
    assert chart_series(page, '.chart[data-metric="loss"]') == ["loss"]
    assert chart_series(page, '.chart[data-metric="accuracy"]') == ["accuracy"]
    assert page.locator('#metrics tr[data-metric="loss"] td').nth(4).inner_text() == "100"
    assert "0.1" in page.locator("#params").inner_text()
    link = page.locator("#datasets a")
    assert link.get_attribute("href").startswith("/ui/datasets/churn?version=2")
    assert "growth" in page.locator("#tags").inner_text()
    trained = page.locator('#models tr[data-registered="churn-model@1"] a')
    assert (trained.get_attribute("href") or "").startswith("/ui/models/churn-model?version=1")
    assert "champion" in page.locator('#models tr[data-registered="churn-model@1"]').inner_text()
    assert page.locator("form[action$='/delete']").count() == 0  # a viewer changes nothing

    _follow(page, "#artifacts a:text-is('notes.txt')")
    assert "notes of run-a" in page.locator("#preview-text").inner_text()
    page.go_back()
    _follow(page, "#artifacts a:text-is('plot.png')")
    img = page.locator("#preview-image")
    img.wait_for()
    page.wait_for_function("() => document.querySelector('#preview-image').complete")
    assert img.evaluate("i => i.naturalWidth") == 8
    page.go_back()
    _follow(page, "#artifacts a:text-is('sample.csv')")
    table = page.locator("#preview-table")
    assert "email" in table.locator("thead").inner_text()
    assert table.locator("tbody tr").count() == 20
    download = page.locator("#download").get_attribute("href") or ""
    assert download == f"/ui/runs/{run}/raw/sample.csv?download=1"


def test_pages_of_runs_follow_the_sort_without_repeats(
    page: Any, seeded: Seeded, many: dict[str, Any]
) -> None:
    eid = many["experiment_id"]
    login(page, seeded.tokens["viewer"], f"/ui/experiments/{eid}?page_size=50")
    _follow(page, '#runs th[data-key="metrics.score"] a')
    _follow(page, '#runs th[data-key="metrics.score"] a')  # ascending
    pages = [_rows(page)]
    scores = [page.locator("#runs tbody td.num").all_inner_texts()]
    while page.locator("a[rel=next]").count():
        _follow(page, "a[rel=next]")
        assert "order=metrics.score+ASC" in page.url  # 50 a page is the default: not spelled
        pages.append(_rows(page))
        scores.append(page.locator("#runs tbody td.num").all_inner_texts())
    assert [len(p) for p in pages] == [50, 50, 20]
    seen = [r for p in pages for r in p]
    assert len(seen) == len(set(seen)) == MANY and set(seen) == set(many["runs"])
    values = [float(v.replace(",", "")) for s in scores for v in s]
    assert values == sorted(values)
    _follow(page, "a[rel=prev]")
    assert _rows(page) == pages[1]
    _follow(page, "a[rel=prev]")
    assert _rows(page) == pages[0]
    assert page.locator("a[rel=prev]").count() == 0


def test_a_contributor_deletes_and_restores_a_run(
    page: Any, seeded: Seeded, scratch: dict[str, str]
) -> None:
    run, eid = scratch["run_id"], scratch["experiment_id"]
    login(page, seeded.tokens["contributor"], f"/ui/runs/{run}")
    page.on("dialog", lambda d: d.accept())
    _follow(page, "form[action$='/delete'] button")
    assert page.locator("h1 .status-deleted").count() == 1
    page.goto(f"/ui/experiments/{eid}")
    assert page.locator("#runs").count() == 0
    page.goto(f"/ui/experiments/{eid}?view=deleted")
    assert _rows(page) == [run]
    page.goto(f"/ui/runs/{run}")
    _follow(page, "form[action$='/restore'] button")
    assert page.locator("h1 .status-deleted").count() == 0
    page.goto(f"/ui/experiments/{eid}")
    assert _rows(page) == [run]
