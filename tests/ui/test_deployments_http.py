"""The deployment and audit routes over plain HTTP: who may call each, the CSRF check of
the forms, errors as pages, and the timeline's JSON."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from mlplane.db.engine import now_ms
from tests.conftest import ServerProcess
from tests.ui.conftest import ROOT, Seeded
from tests.ui.test_deployments import MODEL, seed_traffic, window

OWN = "ui-http-rollback"
FRESH = "ui-http-fresh"
"""Never changed: a rollback finds no earlier split, a promotion no canary (409)."""


@pytest.fixture(scope="module")
def http(server: ServerProcess, seeded: Seeded) -> Iterator[httpx.Client]:
    seed_traffic(seeded.svc, seeded)
    svc = seeded.svc
    svc.deployments.create(ROOT, OWN, f"{MODEL}@1")
    svc.deployments.set_split(ROOT, OWN, f"{MODEL}@2")
    svc.deployments.create(ROOT, FRESH, f"{MODEL}@1")
    if "outsider" not in seeded.extra:
        svc.identities.create_identity(ROOT, "ui-outsider")
        seeded.extra["outsider"] = svc.identities.create_token(ROOT, "ui-outsider").secret
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def bearer(seeded: Seeded, who: str) -> dict[str, str]:
    token = seeded.extra["outsider"] if who == "outsider" else seeded.tokens[who]
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def signed_in(http: httpx.Client, token: str) -> Iterator[httpx.Client]:
    """A browser's session: a client of its own holding the login form's cookie."""
    origin = str(http.base_url).rstrip("/")
    with httpx.Client(base_url=http.base_url, timeout=30) as browser:
        resp = browser.post(
            "/ui/login", data={"token": token, "next": "/ui/"}, headers={"Origin": origin}
        )
        assert resp.status_code == 303, resp.text
        assert browser.cookies.get("mlplane_token")
        yield browser


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def test_rollback_without_the_csrf_token_is_refused(http: httpx.Client, seeded: Seeded) -> None:
    origin = {"Origin": str(http.base_url).rstrip("/")}
    url = f"/ui/deployments/{OWN}/rollback"
    with signed_in(http, seeded.tokens["contributor"]) as browser:
        for data, headers in (
            ({"project": "default"}, origin),
            ({"project": "default", "csrf": "0" * 32}, origin),
            ({"project": "default", "csrf": "x"}, {"Origin": "https://elsewhere.example"}),
        ):
            resp = browser.post(url, data=data, headers=headers)
            assert resp.status_code == 403, resp.text
            assert "text/html" in resp.headers["content-type"]
            assert "Not allowed" in resp.text
        assert seeded.svc.deployments.get(ROOT, OWN).routing.stable == 2  # nothing changed

        page = browser.get(f"/ui/deployments/{OWN}?project=default")
        token = csrf_of(page.text)
        resp = browser.post(url, data={"project": "default", "csrf": token}, headers=origin)
        assert resp.status_code == 303
        assert resp.headers["location"] == f"/ui/deployments/{OWN}?project=default&done=rollback"
    assert seeded.svc.deployments.get(ROOT, OWN).routing.stable == 1


def test_a_viewer_may_not_roll_back_or_promote(http: httpx.Client, seeded: Seeded) -> None:
    before = seeded.svc.deployments.get(ROOT, "churn-live").generation
    for action in ("rollback", "promote"):
        resp = http.post(
            f"/ui/deployments/churn-live/{action}",
            data={"project": "default"},
            headers=bearer(seeded, "viewer"),
        )
        assert resp.status_code == 403, resp.text
        assert "Not allowed" in resp.text
    assert seeded.svc.deployments.get(ROOT, "churn-live").generation == before


def test_a_refusal_of_the_service_is_a_page_with_its_status(
    http: httpx.Client, seeded: Seeded
) -> None:
    # No canary to promote: the service answers Conflict, the page says why.
    resp = http.post(
        f"/ui/deployments/{OWN}/promote",
        data={"project": "default"},
        headers=bearer(seeded, "contributor"),
    )
    assert resp.status_code == 409
    assert "has no canary to promote" in resp.text and "<html" in resp.text


def test_an_unknown_deployment_is_a_404_page(http: httpx.Client, seeded: Seeded) -> None:
    resp = http.get(
        "/ui/deployments/no-such-thing?project=default", headers=bearer(seeded, "viewer")
    )
    assert resp.status_code == 404
    assert "text/html" in resp.headers["content-type"]
    assert "Not found" in resp.text and "no deployment named" in resp.text


def test_the_timeline_answers_json_with_a_series_per_version(
    http: httpx.Client, seeded: Seeded
) -> None:
    resp = http.get(
        "/ui/api/deployments/churn-live/timeline",
        params={"project": "default", "window": "6h"},
        headers=bearer(seeded, "viewer"),
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["window"] == "6h"
    rps = body["charts"]["rps"]
    assert rps["kind"] == "time"
    assert [s["label"] for s in rps["series"]] == ["v1", "v2"]
    # 30 one-minute windows of 70 requests and one of 210, in 5-minute buckets.
    assert sum(y * 300 for y in rps["series"][0]["y"]) == pytest.approx(30 * 70 + 210)
    latency = [s["label"] for s in body["charts"]["latency"]["series"]]
    assert latency == ["v1 p50", "v1 p99", "v2 p50", "v2 p99"]


def test_the_timeline_refuses_with_json_not_a_login_page(
    http: httpx.Client, seeded: Seeded
) -> None:
    url = "/ui/api/deployments/churn-live/timeline"
    anonymous = http.get(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("application/")
    assert "json" in anonymous.headers["content-type"]
    outsider = http.get(url, headers=bearer(seeded, "outsider"))
    assert outsider.status_code == 403 and "json" in outsider.headers["content-type"]
    bad = http.get(url, params={"window": "1y"}, headers=bearer(seeded, "viewer"))
    assert bad.status_code == 400 and "json" in bad.headers["content-type"]


def test_the_timeline_sees_a_window_recorded_just_now(http: httpx.Client, seeded: Seeded) -> None:
    d = seeded.svc.deployments.get(ROOT, OWN)
    seeded.svc.deployments.record_windows(
        ROOT, [window(d.deployment_id, 1, now_ms() - 1_000, requests=12, kind="shadow")]
    )
    body = http.get(f"/ui/api/deployments/{OWN}/timeline", headers=bearer(seeded, "viewer")).json()
    assert [s["label"] for s in body["charts"]["rps"]["series"]] == ["v1 shadow"]


@pytest.mark.parametrize(
    ("who", "path", "allowed"),
    [
        ("outsider", "/ui/deployments/churn-live", False),
        ("viewer", "/ui/deployments/churn-live", True),
        ("outsider", "/ui/deployments", True),  # a list of what they may read: nothing
        ("viewer", "/ui/audit", False),
        ("contributor", "/ui/audit", False),
        ("admin", "/ui/audit", True),
    ],
)
def test_each_page_answers_its_callers(
    http: httpx.Client, seeded: Seeded, who: str, path: str, allowed: bool
) -> None:
    resp = http.get(path, headers=bearer(seeded, who))
    assert resp.status_code == (200 if allowed else 403), resp.text[:300]
    if who == "outsider" and allowed:
        assert "churn-live" not in resp.text


def test_audit_verify_over_http(http: httpx.Client, seeded: Seeded) -> None:
    refused = http.post("/ui/audit/verify", headers=bearer(seeded, "viewer"))
    assert refused.status_code == 403
    resp = http.post("/ui/audit/verify", headers=bearer(seeded, "admin"))
    assert resp.status_code == 200
    assert re.search(r"OK up to seq \d+", resp.text)


def test_audit_filters_are_checked(http: httpx.Client, seeded: Seeded) -> None:
    admin = bearer(seeded, "admin")
    assert http.get("/ui/audit", params={"since": "yesterday"}, headers=admin).status_code == 400
    assert http.get("/ui/audit", params={"project": "nope"}, headers=admin).status_code == 400
    assert http.get("/ui/audit", params={"page": "0"}, headers=admin).status_code == 400
    for params in ({"since": "2100-01-01"}, {"until": "2000-01-01T00:00"}):
        resp = http.get("/ui/audit", params=params, headers=admin)
        assert resp.status_code == 200 and "No audit events match these filters" in resp.text
    both = {"until": "2100-01-01", "since": "2000-01-01"}
    wide = http.get("/ui/audit", params=both, headers=admin)
    assert wide.text.count("<tr data-seq=") > 10
    # A viewer is refused before their filters are even read.
    viewer = http.get("/ui/audit", params={"since": "yesterday"}, headers=bearer(seeded, "viewer"))
    assert viewer.status_code == 403


def test_each_route_answers_every_role_as_it_declares(http: httpx.Client, seeded: Seeded) -> None:
    """As tests/security's route matrix sends them (Bearer tokens, empty forms): a caller
    with the declared level is never refused, one without it always gets a 403."""
    callers = {
        "outsider": set(),
        "viewer": {"read"},
        "contributor": {"read", "write"},
        "approver": {"read", "write"},
        "admin": {"read", "write", "platform"},
    }
    routes = [
        ("GET", "/ui/deployments", None, 200),
        ("GET", f"/ui/deployments/{FRESH}", "read", 200),
        ("GET", f"/ui/api/deployments/{FRESH}/timeline", "read", 200),
        ("POST", f"/ui/deployments/{FRESH}/rollback", "write", 409),
        ("POST", f"/ui/deployments/{FRESH}/promote", "write", 409),
        ("GET", "/ui/audit", "platform", 200),
        ("POST", "/ui/audit/verify", "platform", 200),
    ]
    wrong = []
    for caller, levels in callers.items():
        for method, path, level, status in routes:
            resp = http.request(method, path, headers=bearer(seeded, caller))
            expected = status if level is None or level in levels else 403
            if resp.status_code != expected:
                wrong.append(f"{caller} {method} {path}: {resp.status_code}, not {expected}")
    assert not wrong, wrong
    assert seeded.svc.deployments.get(ROOT, FRESH).generation == 1


def test_a_shadow_shows_in_the_list_and_on_the_page(http: httpx.Client, seeded: Seeded) -> None:
    name = "ui-http-shadow"
    seeded.svc.deployments.create(ROOT, name, f"{MODEL}@1")
    seeded.svc.deployments.set_shadow(ROOT, name, f"{MODEL}@2", 10)
    viewer = bearer(seeded, "viewer")
    listing = http.get("/ui/deployments", params={"project": "default"}, headers=viewer).text
    row = listing[listing.index(f'data-deployment="{name}"') :].split("</tr>")[0]
    assert '<td class="mode">shadow</td>' in row and "shadow v2 10%" in row
    assert '<span data-width="100.0" data-color="0" title="v1 100%">v1 100%</span>' in row
    page = http.get(f"/ui/deployments/{name}", headers=viewer).text
    assert "Shadow: v2 gets a copy of 10% of requests" in page
    assert "A/B report" not in page  # one live version: nothing to compare
