"""The model registry's pages in a real browser: the list, a model with its versions, card,
scan, files and lineage graph, and promotion through the forms.

The seeded ``churn-model`` is only read here (other sections' tests rely on its
``champion`` alias and on ``churn-live``). Promotion runs on a model of its own, in a
project of its own with its own identities (:func:`promo`), so nothing another test counts
or reads changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from tests.ui.conftest import ROOT, Seeded, login

PROJECT = "models-ui"
PROMO = "promo-model"
PICKLED = "pickled-model"
CARD_TEXT = "Scores churn for retention offers.\n\nNot for <b>credit</b> decisions."


class Doubler:
    """A model only pickle can hold, of a class the scanner does not know: ``unknown``."""

    def predict(self, frame: Any) -> Any:
        return frame * 2


@dataclass(frozen=True)
class Promo:
    project: str
    tokens: dict[str, str]
    """role (viewer, contributor, approver) -> token, in :data:`PROJECT` only"""


def promo(seeded: Seeded) -> Promo:
    """A project with ``promo-model`` (v1 accuracy 0.5, v2 accuracy 0.95) whose policy lets
    only versions with accuracy >= 0.9 become ``champion``, ``pickled-model`` (scanned
    ``unknown``, accepted by an admin), and a viewer, a contributor and an approver of it.
    Made once per session, whichever module asks first."""
    found = seeded.extra.get(PROJECT)
    if isinstance(found, Promo):
        return found
    svc, ids = seeded.svc, seeded.svc.identities
    tokens = {}
    for role in ("viewer", "contributor", "approver"):
        name = f"{PROJECT}-{role}"
        ids.create_identity(ROOT, name)
        ids.grant(ROOT, name, PROJECT, role)
        tokens[role] = ids.create_token(ROOT, name).secret
    rng = np.random.default_rng(3)
    x = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = (x["a"] > 0).astype(int)
    for accuracy in (0.5, 0.95):
        svc.registry.register(
            ROOT,
            PROMO,
            LogisticRegression().fit(x, y),
            input_example=x.head(5),
            sensitive=["b"],
            metrics={"accuracy": accuracy},
            description=f"accuracy {accuracy}",
            project=PROJECT,
        )
    svc.registry.set_policy(ROOT, PROMO, {"rules": ["accuracy >= 0.9"]}, project=PROJECT)
    svc.registry.update_card(ROOT, f"{PROMO}@2", {"intended_use": CARD_TEXT}, project=PROJECT)
    svc.registry.register(
        ROOT,
        PICKLED,
        Doubler(),
        input_example=pd.DataFrame({"a": [1.0, 2.0]}),
        allow_unknown=True,  # an admin's audited override
        project=PROJECT,
    )
    made = Promo(PROJECT, tokens)
    seeded.extra[PROJECT] = made
    return made


@pytest.fixture(scope="module")
def own(seeded: Seeded) -> Promo:
    return promo(seeded)


def _model_url(name: str, project: str = "default", version: int | None = None) -> str:
    url = f"/ui/models/{name}?project={project}"
    return url if version is None else f"{url}&version={version}"


def test_the_list_shows_each_model_with_its_aliases_versions_and_scan(
    page: Any, seeded: Seeded
) -> None:
    login(page, seeded.tokens["viewer"], target="/ui/models?project=default")
    row = page.locator("table.models-list tr[data-model='churn-model']")
    assert row.count() == 1
    assert row.locator(".badge.alias").inner_text() == "champion → v1"
    cells = row.locator("td")
    assert cells.nth(1).inner_text() == "v2"  # the latest version
    assert cells.nth(5).inner_text() == "2"  # how many versions
    assert row.locator(".badge.verdict").inner_text() == "safe"
    assert "trained by run-b" in cells.nth(4).inner_text()
    assert page.locator("nav a.active").inner_text() == "Models"
    row.locator("a", has_text="churn-model").click()
    page.wait_for_url("**/ui/models/churn-model?project=default")
    assert page.locator("h1").inner_text() == "churn-model"


def test_a_viewer_sees_versions_card_scan_and_lineage_but_no_promotion(
    page: Any, seeded: Seeded
) -> None:
    login(page, seeded.tokens["viewer"], target=_model_url("churn-model", version=1))
    versions = page.locator("table.versions tbody tr")
    assert [versions.nth(i).get_attribute("data-version") for i in range(2)] == ["2", "1"]
    v1 = page.locator("table.versions tr[data-version='1']")
    assert "champion" in v1.locator(".aliases").inner_text()
    assert v1.locator(f"a[href='/ui/runs/{seeded.runs['run-a']}']").count() == 1
    assert "churn-live" in v1.inner_text()  # it serves 70% of churn-live
    assert "accuracy=" in v1.locator(".metrics").inner_text()
    assert page.locator("h2#version").inner_text().startswith("Version 1")

    card = page.locator("#card")
    unwritten = card.locator(".unwritten")
    assert "Not written yet" in unwritten.inner_text()
    assert unwritten.locator("[data-field=intended_use]").inner_text() == "intended use"
    assert "churn@2" in card.inner_text()
    assert card.locator("a", has_text="run-a").count() == 1
    assert "lr" in card.inner_text() and "0.1" in card.inner_text()

    assert page.locator("#scan h3 + span .badge.verdict").inner_text() == "safe"
    skops = page.locator("#scan table.findings tr", has_text="model/model.skops::")
    assert skops.count() >= 1 and "LogisticRegression" in skops.first.inner_text()
    assert page.locator("#integrity").inner_text() == "verified"
    files = page.locator("#files table.files tbody tr")
    assert files.count() == 5
    assert page.locator("#files tr[data-path='model/model.skops']").inner_text().count("matches")
    assert "tenure" in page.locator("#signature").inner_text()

    graph = page.locator("#lineage svg.lineage")
    assert graph.locator("a[href='/ui/datasets/churn?version=2&project=default']").count() == 1
    assert graph.locator(f"a[href='/ui/runs/{seeded.runs['run-a']}']").count() == 1
    assert graph.locator("a[href='/ui/deployments/churn-live?project=default']").count() == 1
    assert graph.locator("a.current").inner_html().count("churn-model@1") == 2  # title + label
    # Dataset -> run -> version, then one edge per deployment serving v1 (other tests of the
    # session may have added some to the same store).
    serving = [
        d
        for d in seeded.svc.deployments.list_deployments(ROOT)
        if d.model == seeded.model and 1 in d.routing.versions()
    ]
    assert graph.locator("path.edge").count() == 2 + len(serving) >= 3
    assert graph.bounding_box()["width"] > 600  # drawn, four columns wide

    assert page.locator("#promote").count() == 0
    assert page.locator("form[action$='/aliases']").count() == 0

    # Without ?version the newest is shown: v2, trained by run-b.
    page.goto(_model_url("churn-model"))
    assert page.locator("h2#version").inner_text().startswith("Version 2")
    assert page.locator(f"svg.lineage a[href='/ui/runs/{seeded.runs['run-b']}']").count() == 1


def test_the_card_shows_markdown_as_text_and_the_signature_marks_sensitive_columns(
    page: Any, seeded: Seeded, own: Promo
) -> None:
    login(page, own.tokens["viewer"], target=_model_url(PROMO, PROJECT, 2))
    field = page.locator("#card [data-field=intended_use]")
    paragraphs = field.locator("p.text")
    assert paragraphs.count() == 2
    assert paragraphs.nth(1).inner_text() == "Not for <b>credit</b> decisions."
    assert field.locator("b").count() == 0  # shown, never interpreted
    assert page.locator("#signature tr", has_text="sensitive").inner_text().startswith("input")
    # No run, no deployment: the graph says so in placeholders, and links only the version.
    graph = page.locator("svg.lineage")
    assert graph.locator(".placeholder").count() == 3
    assert graph.locator("a").count() == 1
    assert page.locator("#promote").count() == 0  # a viewer of this project too


def _promote(page: Any, alias: str) -> Any:
    page.fill("#alias", alias)
    with page.expect_navigation() as nav:
        page.click("form.promote-alias button[type=submit]")
    return nav.value


def test_a_contributor_promotes_a_version_to_an_alias_through_the_form(
    page: Any, seeded: Seeded, own: Promo
) -> None:
    login(page, own.tokens["contributor"], target=_model_url(PROMO, PROJECT, 2))
    response = _promote(page, "candidate")
    assert response.status == 200  # after the 303
    assert "done=alias" in page.url and "version=2" in page.url
    assert page.locator("#done").inner_text() == "Done: candidate → version 2"
    assert "candidate" in page.locator("table.versions tr[data-version='2'] .aliases").inner_text()
    assert seeded.svc.registry.get_model(ROOT, PROMO, project=PROJECT).aliases["candidate"] == 2

    # champion is protected: the approver role decides, and the page says so with a 403.
    response = _promote(page, "champion")
    assert response.status == 403
    assert "approve" in page.locator("#error").inner_text()
    assert "champion" not in seeded.svc.registry.get_model(ROOT, PROMO, project=PROJECT).aliases


def test_an_approver_is_held_to_the_promotion_policy(page: Any, seeded: Seeded, own: Promo) -> None:
    login(page, own.tokens["approver"], target=_model_url(PROMO, PROJECT, 1))
    response = _promote(page, "champion")
    assert response.status == 409
    error = page.locator("#error").inner_text()
    assert "accuracy >= 0.9" in error and "0.5" in error
    assert page.locator("h2#version").inner_text().startswith("Version 1")  # still in view

    page.goto(_model_url(PROMO, PROJECT, 2))
    response = _promote(page, "champion")
    assert response.status == 200
    assert page.locator("#done").inner_text() == "Done: champion → version 2"
    row = page.locator("table.versions tr[data-version='2'] .aliases")
    assert "champion" in row.inner_text()
    assert seeded.svc.registry.get_model(ROOT, PROMO, project=PROJECT).aliases["champion"] == 2


def test_a_contributor_moves_a_version_to_a_stage(page: Any, seeded: Seeded, own: Promo) -> None:
    login(page, own.tokens["contributor"], target=_model_url(PROMO, PROJECT, 1))
    page.select_option("#stage", "Staging")
    with page.expect_navigation():
        page.click("form.promote-stage button[type=submit]")
    assert page.locator("#done").inner_text() == "Done: version 1 is now in stage Staging"
    assert page.locator("table.versions tr[data-version='1'] .badge.stage").inner_text() == (
        "Staging"
    )
    assert seeded.svc.registry.get_version(ROOT, f"{PROMO}@1", project=PROJECT).stage == "Staging"
    page.goto(f"/ui/models?project={PROJECT}")
    assert "v1 Staging" in page.locator(f"tr[data-model='{PROMO}']").inner_text()

    # Production is guarded like a protected alias.
    page.goto(_model_url(PROMO, PROJECT, 1))
    page.select_option("#stage", "Production")
    with page.expect_navigation() as nav:
        page.click("form.promote-stage button[type=submit]")
    assert nav.value.status == 403
    assert page.locator("#error").count() == 1


def test_a_scan_finding_that_is_not_safe_is_shown_with_its_file_and_import(
    page: Any, seeded: Seeded, own: Promo
) -> None:
    login(page, own.tokens["viewer"], target=f"/ui/models?project={PROJECT}")
    row = page.locator(f"tr[data-model='{PICKLED}']")
    assert row.locator(".badge.verdict").inner_text() == "unknown"
    row.locator("a", has_text=PICKLED).click()
    page.wait_for_url(f"**/ui/models/{PICKLED}?project={PROJECT}")
    assert "accepted by root" in page.locator("#scan h3 + span").inner_text()
    flagged = page.locator("#scan table.findings tr.finding-unknown")
    assert flagged.count() == 1
    first = page.locator("#scan table.findings tbody tr").first
    assert first.get_attribute("class") == "finding-unknown"  # ahead of the safe ones
    assert flagged.locator("td").nth(0).inner_text() == "model/model.pkl"
    assert flagged.locator("td").nth(1).inner_text() == "tests.ui.test_models.Doubler"
    assert "not on the allowlist" in flagged.inner_text()
    assert "1 finding not safe" in page.locator("#scan").inner_text()
    pkl = page.locator("#files tr[data-path='model/model.pkl']")
    assert pkl.locator(".badge.verdict").inner_text() == "unknown"
    assert "matches" in pkl.inner_text()
    assert "pyfunc/pickle" in page.locator("table.versions tr[data-version='1']").inner_text()


def test_a_file_changed_on_disk_fails_the_integrity_check(
    page: Any, seeded: Seeded, own: Promo
) -> None:
    name = "tampered-model"
    seeded.svc.registry.register(
        ROOT,
        name,
        Doubler(),
        input_example=pd.DataFrame({"a": [3.0, 4.0]}),  # files of their own, a cache of its own
        allow_unknown=True,
        project=PROJECT,
    )
    _, folder, _ = seeded.svc.registry.fetch(ROOT, f"{name}@1", project=PROJECT)
    (folder / "requirements.lock").write_text("someone==1.0\n")  # the local copy, changed
    login(page, own.tokens["viewer"], target=_model_url(name, PROJECT))
    assert page.locator("#integrity").inner_text() == "check failed"
    row = page.locator("#files tr[data-path='requirements.lock']")
    assert "was modified; it will not be loaded" in row.inner_text()
    assert row.locator(".badge.verdict").count() == 0  # a changed file is not scanned as if ok
    assert "matches" in page.locator("#files tr[data-path='model/model.pkl']").inner_text()
