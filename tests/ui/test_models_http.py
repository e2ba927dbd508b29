"""The model registry's routes over plain HTTP: who may post the forms, what bad input and
unknown names answer. Changes go to the module's own model (see ``test_models.promo``)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.ui.conftest import ROOT, Seeded
from tests.ui.test_models import PROJECT, PROMO, Promo, promo


@pytest.fixture(scope="module")
def own(seeded: Seeded) -> Promo:
    return promo(seeded)


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _aliases(seeded: Seeded, name: str, project: str) -> dict[str, int]:
    return seeded.svc.registry.get_model(ROOT, name, project=project).aliases


def _sign_in(http: httpx.Client, server: ServerProcess, token: str) -> str:
    """A cookie session, as the browser gets one; returns the CSRF token of its forms."""
    origin = {"Origin": server.url}
    resp = http.post("/ui/login", data={"token": token, "next": "/ui/models"}, headers=origin)
    assert resp.status_code == 303, resp.text
    page = http.get(f"/ui/models/{PROMO}", params={"project": PROJECT, "version": 1})
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, "the model page carries the session's CSRF token"
    return found.group(1)


def test_a_cookie_session_needs_the_csrf_token_and_our_origin(
    http: httpx.Client, server: ServerProcess, seeded: Seeded, own: Promo
) -> None:
    csrf = _sign_in(http, server, own.tokens["contributor"])
    url = f"/ui/models/{PROMO}/aliases"
    fields = {"project": PROJECT, "alias": "http-csrf", "version": "1"}
    origin = {"Origin": server.url}

    missing = http.post(url, data=fields, headers=origin)
    assert missing.status_code == 403
    assert "CSRF" in missing.text and "text/html" in missing.headers["content-type"]
    forged = http.post(url, data={**fields, "csrf": csrf}, headers={"Origin": "http://evil.test"})
    assert forged.status_code == 403
    assert "http-csrf" not in _aliases(seeded, PROMO, PROJECT)

    sent = http.post(url, data={**fields, "csrf": csrf}, headers=origin)
    assert sent.status_code == 303
    assert sent.headers["location"].startswith(f"/ui/models/{PROMO}?project={PROJECT}&version=1")
    assert _aliases(seeded, PROMO, PROJECT)["http-csrf"] == 1


def test_a_viewer_token_may_not_post(http: httpx.Client, seeded: Seeded, own: Promo) -> None:
    before = _aliases(seeded, "churn-model", "default")
    resp = http.post(
        "/ui/models/churn-model/aliases",
        data={"alias": "candidate", "version": "2"},
        headers=_bearer(seeded.tokens["viewer"]),
    )
    assert resp.status_code == 403
    assert 'id="error"' in resp.text and "contributor role" in resp.text  # on the model page
    viewer = _bearer(own.tokens["viewer"])
    empty = http.post(f"/ui/models/{PROMO}/aliases", data={"project": PROJECT}, headers=viewer)
    assert empty.status_code == 403  # the role is checked before the (missing) input
    assert _aliases(seeded, "churn-model", "default") == before


def test_bad_input_is_a_400_with_the_reason(http: httpx.Client, seeded: Seeded, own: Promo) -> None:
    auth = _bearer(own.tokens["contributor"])
    url = f"/ui/models/{PROMO}/aliases"
    fields = {"project": PROJECT, "version": "2"}
    bad = http.post(url, data={**fields, "alias": "9 lives"}, headers=auth)
    assert bad.status_code == 400
    assert "cannot be an alias" in bad.text and 'id="error"' in bad.text
    latest = http.post(url, data={**fields, "alias": "latest"}, headers=auth)
    assert latest.status_code == 400 and "reserved" in latest.text
    empty = http.post(url, data={"project": PROJECT}, headers=auth)
    assert empty.status_code == 400 and "choose a version" in empty.text
    stage = http.post(
        f"/ui/models/{PROMO}/stage",
        data={"project": PROJECT, "version": "2", "stage": "Prod"},
        headers=auth,
    )
    assert stage.status_code == 400 and "invalid stage" in stage.text
    assert not {"9 lives", "latest"} & set(_aliases(seeded, PROMO, PROJECT))


def test_unknown_models_and_versions_are_404_pages(http: httpx.Client, seeded: Seeded) -> None:
    auth = _bearer(seeded.tokens["viewer"])
    model = http.get("/ui/models/no-such-model", headers=auth)
    assert model.status_code == 404
    assert "text/html" in model.headers["content-type"]
    assert "no model named" in model.text and "churn-model" in model.text  # names the known ones
    for version in ("99", "no-such-alias"):
        resp = http.get("/ui/models/churn-model", params={"version": version}, headers=auth)
        assert resp.status_code == 404, version
        assert "<h1>Not found</h1>" in resp.text
    odd = http.get("/ui/models/churn-model", params={"version": "v 1!"}, headers=auth)
    assert odd.status_code == 400
    post = http.post(
        "/ui/models/no-such-model/aliases",
        data={"alias": "candidate", "version": "1"},
        headers=_bearer(seeded.tokens["contributor"]),
    )
    assert post.status_code == 404


def test_pages_answer_html_under_the_policy_and_refuse_other_projects(
    http: httpx.Client, seeded: Seeded, own: Promo
) -> None:
    listing = http.get("/ui/models", headers=_bearer(seeded.tokens["viewer"]))
    assert listing.status_code == 200
    assert "script-src 'self'" in listing.headers["content-security-policy"]
    assert 'data-model="churn-model"' in listing.text
    assert "<script>" not in listing.text and "style=" not in listing.text
    page = http.get("/ui/models/churn-model", headers=_bearer(seeded.tokens["viewer"]))
    assert page.status_code == 200
    assert "<script>" not in page.text and "style=" not in page.text
    assert not re.search(r"<[^>]*\son[a-z]+=", page.text)  # no inline handlers
    # A viewer of another project only: the model is refused, not hidden.
    other = http.get("/ui/models/churn-model", headers=_bearer(own.tokens["viewer"]))
    assert other.status_code == 403
    mine = http.get("/ui/models", headers=_bearer(own.tokens["viewer"]))
    assert mine.status_code == 200  # the list falls back to the project it may read
    assert f'data-model="{PROMO}"' in mine.text and "churn-model" not in mine.text


def test_each_route_answers_every_role_as_it_declares(
    http: httpx.Client, seeded: Seeded, own: Promo
) -> None:
    """As tests/security's route matrix sends them: an empty form from a caller with the
    role is bad input (400), from one without it a 403, never a 404 that hides the model."""
    callers = {
        "viewer": (seeded.tokens["viewer"], {"read"}),
        "contributor": (seeded.tokens["contributor"], {"read", "write"}),
        "approver": (seeded.tokens["approver"], {"read", "write"}),
        "platform admin": (seeded.tokens["admin"], {"read", "write"}),
        "other project": (own.tokens["contributor"], set()),
    }
    routes = [
        ("GET", "/ui/models", None),
        ("GET", "/ui/models/churn-model", "read"),
        ("POST", "/ui/models/churn-model/aliases", "write"),
        ("POST", "/ui/models/churn-model/stage", "write"),
    ]
    wrong = []
    for caller, (token, levels) in callers.items():
        for method, path, level in routes:
            resp = http.request(method, path, headers=_bearer(token))
            allowed = level is None or level in levels
            expected = (200 if method == "GET" else 400) if allowed else 403
            if resp.status_code != expected:
                wrong.append(f"{caller} {method} {path}: {resp.status_code}, not {expected}")
    assert not wrong, wrong
    assert _aliases(seeded, "churn-model", "default") == {"champion": 1}
