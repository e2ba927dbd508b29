"""The dataset pages' refusals over plain HTTP: unknown datasets and versions are 404
pages, a caller without a role on the project gets 403, a bad diff request 400."""

from __future__ import annotations

import html
from collections.abc import Iterator

import httpx
import pytest

from mlplane.security import local_admin
from tests.conftest import ServerProcess
from tests.ui.conftest import Seeded

ROOT = local_admin("root")


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def _get(http: httpx.Client, token: str, path: str, **params: str) -> httpx.Response:
    return http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def outsider(seeded: Seeded) -> str:
    """A viewer of another project only."""
    ids = seeded.svc.identities
    ids.create_identity(ROOT, "otto")
    ids.grant(ROOT, "otto", "elsewhere", "viewer")
    return ids.create_token(ROOT, "otto").secret


def test_the_pages_answer_a_viewer(http: httpx.Client, seeded: Seeded) -> None:
    viewer = seeded.tokens["viewer"]
    for path in ("/ui/datasets", "/ui/datasets/churn", "/ui/datasets/churn/diff"):
        resp = _get(http, viewer, path, project="default")
        assert resp.status_code == 200, (path, resp.text[:300])
        assert resp.headers["content-type"].startswith("text/html")
        assert "<script>" not in resp.text and 'style="' not in resp.text
        assert "@example.com" not in resp.text


def test_an_unknown_dataset_is_a_404_page(http: httpx.Client, seeded: Seeded) -> None:
    resp = _get(http, seeded.tokens["viewer"], "/ui/datasets/nope", project="default")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/html")
    assert "no dataset named 'nope'" in html.unescape(resp.text)
    diff = _get(http, seeded.tokens["viewer"], "/ui/datasets/nope/diff", project="default")
    assert diff.status_code == 404


def test_an_unknown_version_is_a_404_page(http: httpx.Client, seeded: Seeded) -> None:
    viewer = seeded.tokens["viewer"]
    resp = _get(http, viewer, "/ui/datasets/churn", project="default", version="9")
    assert resp.status_code == 404 and "text/html" in resp.headers["content-type"]
    assert "churn" in resp.text
    diff = _get(http, viewer, "/ui/datasets/churn/diff", project="default", a="1", b="9")
    assert diff.status_code == 404


def test_a_malformed_version_is_a_400_page(http: httpx.Client, seeded: Seeded) -> None:
    resp = _get(http, seeded.tokens["viewer"], "/ui/datasets/churn", version="no/such")
    assert resp.status_code == 400


def test_a_viewer_of_another_project_is_refused(
    http: httpx.Client, seeded: Seeded, outsider: str
) -> None:
    for path in ("/ui/datasets/churn", "/ui/datasets/churn/diff"):
        resp = _get(http, outsider, path, project="default")
        assert resp.status_code == 403, path
        assert "text/html" in resp.headers["content-type"]
        assert "@example.com" not in resp.text and "tenure" not in resp.text
    # The list with no project of the caller's own holding data: refused, not empty.
    assert _get(http, outsider, "/ui/datasets").status_code == 403


def test_the_diff_of_a_dataset_with_one_version_compares_it_with_itself(
    http: httpx.Client, seeded: Seeded, tmp_path_factory: pytest.TempPathFactory
) -> None:
    src = tmp_path_factory.mktemp("one-version") / "t.csv"
    src.write_text("a,b\n1,x\n2,y\n")
    seeded.svc.data.add(ROOT, "single", src, project="ui-data-http")
    resp = _get(http, seeded.tokens["admin"], "/ui/datasets/single/diff", project="ui-data-http")
    assert resp.status_code == 200
    assert 'id="identical"' in resp.text and "single@1" in resp.text


@pytest.mark.parametrize(
    ("a", "b"), [("abc", "2"), ("1", "two"), ("0", "2"), ("-1", "2"), ("1", "2.5")]
)
def test_a_bad_diff_request_is_a_400_page(
    http: httpx.Client, seeded: Seeded, a: str, b: str
) -> None:
    resp = _get(http, seeded.tokens["viewer"], "/ui/datasets/churn/diff", a=a, b=b)
    assert resp.status_code == 400
    assert "is not a version number" in resp.text
