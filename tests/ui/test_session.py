"""The UI's session and form rules over plain HTTP against the real server: where the
cookie works, where it does not, and the CSRF check."""

from __future__ import annotations

import httpx
import pytest

from mlplane.server.auth import COOKIE
from tests.conftest import ServerProcess
from tests.ui.conftest import Seeded


@pytest.fixture
def http(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30)


def _login(http: httpx.Client, token: str, server: ServerProcess) -> httpx.Response:
    return http.post(
        "/ui/login", data={"token": token, "next": "/ui/"}, headers={"Origin": server.url}
    )


def test_pages_redirect_to_login_and_back(http: httpx.Client) -> None:
    r = http.get("/ui/experiments?project=default")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=/ui/experiments%3Fproject%3Ddefault"
    assert http.get("/").headers["location"] == "/ui/"
    page = http.get("/ui/login")
    assert page.status_code == 200 and 'name="token"' in page.text


def test_the_session_cookie_is_strict_http_only_and_scoped_to_the_ui(
    http: httpx.Client, seeded: Seeded, server: ServerProcess
) -> None:
    r = _login(http, seeded.tokens["viewer"], server)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert http.get("/ui/").status_code == 200
    # The API never takes the cookie: only UI forms carry the CSRF check.
    token = http.cookies[COOKIE]
    assert httpx.get(server.url + "/api/v1/experiments", cookies={COOKIE: token}).status_code == 401


def test_login_only_from_our_own_page_and_only_back_into_the_ui(
    http: httpx.Client, seeded: Seeded, server: ServerProcess
) -> None:
    foreign = http.post(
        "/ui/login",
        data={"token": seeded.tokens["viewer"], "next": "/ui/"},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and COOKIE not in foreign.headers.get("set-cookie", "")
    away = http.post(
        "/ui/login",
        data={"token": seeded.tokens["viewer"], "next": "https://evil.example/"},
        headers={"Origin": server.url},
    )
    assert away.headers["location"] == "/ui/"


def test_a_form_post_needs_our_origin_and_the_csrf_token(
    http: httpx.Client, seeded: Seeded, server: ServerProcess
) -> None:
    _login(http, seeded.tokens["viewer"], server)
    no_csrf = http.post("/ui/logout", data={}, headers={"Origin": server.url})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    page = http.get("/ui/").text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    elsewhere = http.post("/ui/logout", data={"csrf": csrf}, headers={"Origin": "http://x.test"})
    assert elsewhere.status_code == 403
    ok = http.post("/ui/logout", data={"csrf": csrf}, headers={"Origin": server.url})
    assert ok.status_code == 303 and f'{COOKIE}=""' in ok.headers["set-cookie"]


def test_a_revoked_token_ends_the_session(
    http: httpx.Client, seeded: Seeded, server: ServerProcess
) -> None:
    from mlplane.security import local_admin

    ids = seeded.svc.identities
    made = ids.create_token(local_admin("root"), "vic")
    _login(http, made.secret, server)
    assert http.get("/ui/").status_code == 200
    ids.revoke_token(local_admin("root"), made.info.token_id)
    r = http.get("/ui/")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_pages_have_a_strict_policy_and_static_files_are_cached(
    http: httpx.Client, seeded: Seeded, server: ServerProcess
) -> None:
    page = http.get("/ui/login")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in page.text  # no inline script anywhere
    src = page.text.split('src="', 1)[1].split('"', 1)[0]
    asset = http.get(src)
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    escape = http.get("/ui/static/..%2f..%2fconfig.py")
    assert escape.status_code == 404 and "import" not in escape.text


def test_without_auth_pages_need_no_sign_in_but_forms_still_need_our_origin(
    seeded: Seeded, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``--auth none`` on loopback: every caller is an admin, so a page elsewhere that makes
    the browser post to 127.0.0.1 must still be refused (CSRF against a local server)."""
    from mlplane.security import local_admin

    srv = ServerProcess(seeded.home)  # MLPLANE_AUTH=none
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            assert http.get("/ui/login").headers["location"] == "/ui/"
            home = http.get("/ui/")
            assert home.status_code == 200 and "anonymous" in home.text
            assert "Sign out" not in home.text  # no session to end
            eid = seeded.svc.tracking.create_experiment(local_admin("root"), "auth-none-csrf")
            run = seeded.svc.tracking.create_run(local_admin("root"), eid).info.run_id
            page = http.get(f"/ui/runs/{run}").text
            csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            forged = http.post(
                f"/ui/runs/{run}/delete", data={"csrf": csrf}, headers={"Origin": "https://x.test"}
            )
            assert forged.status_code == 403
            guessed = http.post(
                f"/ui/runs/{run}/delete", data={"csrf": "0" * 32}, headers={"Origin": srv.url}
            )
            assert guessed.status_code == 403
            assert seeded.svc.tracking.get_run(local_admin("root"), run).info.lifecycle_stage == (
                "active"
            )
            ok = http.post(
                f"/ui/runs/{run}/delete", data={"csrf": csrf}, headers={"Origin": srv.url}
            )
            assert ok.status_code == 303
            assert seeded.svc.tracking.get_run(local_admin("root"), run).info.lifecycle_stage == (
                "deleted"
            )
    finally:
        srv.stop()
