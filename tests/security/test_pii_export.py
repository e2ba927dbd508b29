"""Data-loss prevention: the bytes of a dataset version with unhandled PII leave the store
only for a project admin, audited either way, through every face; its metadata stays
readable to every reader, and a masked version downloads for a viewer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import mlplane.data
from mlplane import fluent
from mlplane.config import load_settings
from mlplane.errors import PermissionDenied
from mlplane.security import Principal, local_admin
from mlplane.services import Services
from tests.conftest import ServerProcess

ROOT = local_admin("root")
VIEWER = Principal("vic", roles={"default": "viewer"})
CONTRIBUTOR = Principal("cora", roles={"default": "contributor"})
ADMIN = Principal("pam", roles={"default": "admin"})
CSV = "id,email,score\n1,ada@example.com,0.9\n2,bob@example.org,0.4\n3,cy@example.net,0.7\n"


def _people(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "people.csv"
    path.write_text(CSV)
    return path


def _export_events(svc: Services) -> list[tuple[str, str, str]]:
    events = svc.audit.events(ROOT, action="dataset.export.pii", limit=1000)
    return [(e.actor, e.resource, e.outcome) for e in events]


def _refusal_is_explained(message: str) -> None:
    assert "PII that no policy handles" in message and "'admin' role" in message
    assert "--pii mask" in message and "ask a project admin" in message


@pytest.fixture
def flagged(services: Services, tmp_path: Path) -> str:
    version = services.data.add(ROOT, "people", _people(tmp_path / "src")).version
    assert version.pii_unhandled
    return version.ref


@pytest.mark.parametrize("who", [VIEWER, CONTRIBUTOR], ids=["viewer", "contributor"])
def test_a_non_admin_cannot_export_unhandled_pii(
    services: Services, flagged: str, who: Principal, tmp_path: Path
) -> None:
    with pytest.raises(PermissionDenied) as err:
        services.data.materialize(who, flagged, tmp_path / "out")
    _refusal_is_explained(err.value.message)
    with pytest.raises(PermissionDenied):
        services.data.open_file(who, flagged, "people.csv")
    assert not (tmp_path / "out" / "people.csv").exists()
    resource = f"dataset/{flagged}"
    assert _export_events(services) == [(who.name, resource, "denied")] * 2


def test_a_sample_is_an_export(services: Services, flagged: str) -> None:
    with pytest.raises(PermissionDenied):
        services.data.sample(CONTRIBUTOR, flagged, fraction=0.5)
    assert _export_events(services) == [("cora", f"dataset/{flagged}", "denied")]


def test_a_project_admin_exports_and_is_audited(
    services: Services, flagged: str, tmp_path: Path
) -> None:
    out = services.data.materialize(ADMIN, flagged, tmp_path / "out")
    assert (out / "people.csv").read_text() == CSV
    size, chunks = services.data.open_file(ADMIN, flagged, "people.csv")
    assert size == len(CSV) and b"".join(chunks).decode() == CSV
    assert _export_events(services) == [("pam", f"dataset/{flagged}", "ok")] * 2


def test_metadata_stays_readable_to_a_viewer(services: Services, flagged: str) -> None:
    version = services.data.get(VIEWER, flagged)
    assert version.pii_unhandled and version.files[0].pii is not None
    assert services.data.versions(VIEWER, "people")[0].ref == flagged
    assert _export_events(services) == []


def test_a_masked_version_downloads_for_a_viewer(services: Services, tmp_path: Path) -> None:
    masked = services.data.add(ROOT, "people", _people(tmp_path / "src"), pii="mask").version
    assert not masked.pii_unhandled
    out = services.data.materialize(VIEWER, masked.ref, tmp_path / "out")
    text = (out / "people.csv").read_text()
    assert "ada@example.com" not in text and text.count("[EMAIL]") == 3
    assert _export_events(services) == []


# -- over HTTP, with tokens, and the SDK's local cache -------------------------------------------


@dataclass
class Remote:
    url: str
    services: Services
    ref: str
    masked: str
    viewer: str
    contributor: str
    admin: str


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    home = tmp_path_factory.mktemp("dlp")
    svc = Services.from_settings(load_settings(home=home))
    ids = svc.identities
    ids.bootstrap(ROOT, "boss")
    for name, role in [("vic", "viewer"), ("cora", "contributor"), ("pam", "admin")]:
        ids.create_identity(ROOT, name)
        ids.grant(ROOT, name, "default", role)
    src = _people(tmp_path_factory.mktemp("dlp-src"))
    ref = svc.data.add(ROOT, "people", src).version.ref
    masked = svc.data.add(ROOT, "people-masked", src, pii="mask").version.ref
    srv = ServerProcess(home, env={"MLPLANE_AUTH": "token"})
    try:
        yield Remote(
            url=srv.url,
            services=svc,
            ref=ref,
            masked=masked,
            viewer=ids.create_token(ROOT, "vic").secret,
            contributor=ids.create_token(ROOT, "cora").secret,
            admin=ids.create_token(ROOT, "pam").secret,
        )
    finally:
        srv.stop()
        svc.close()


def _get(remote: Remote, token: str, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(remote.url + "/api/v1" + path, headers=headers, timeout=30)


def test_the_download_route_follows_the_rule(remote: Remote) -> None:
    refused = _get(remote, remote.contributor, f"/datasets/{remote.ref}/files/people.csv")
    assert refused.status_code == 403
    _refusal_is_explained(refused.json()["detail"])
    allowed = _get(remote, remote.admin, f"/datasets/{remote.ref}/files/people.csv")
    assert allowed.status_code == 200 and allowed.text == CSV
    shown = _get(remote, remote.viewer, f"/datasets/{remote.ref}")
    assert shown.status_code == 200 and shown.json()["pii_unhandled"] is True
    masked = _get(remote, remote.viewer, f"/datasets/{remote.masked}/files/people.csv")
    assert masked.status_code == 200 and "ada@example.com" not in masked.text
    events = _export_events(remote.services)
    assert ("cora", f"dataset/{remote.ref}", "denied") in events
    assert ("pam", f"dataset/{remote.ref}", "ok") in events


def _as(remote: Remote, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLANE_TOKEN", token)
    fluent.set_tracking_uri(remote.url)  # a fresh client, with this token


def test_the_sdk_cache_never_hands_out_what_the_store_refuses(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    _as(remote, remote.viewer, monkeypatch)
    with pytest.raises(PermissionDenied, match="--pii mask"):
        mlplane.data.get(remote.ref).to_pandas()
    _as(remote, remote.admin, monkeypatch)
    assert sorted(mlplane.data.get(remote.ref).to_pandas()["email"])[0] == "ada@example.com"
    # The admin's copy is now in this user's cache: the viewer still goes through the store.
    _as(remote, remote.viewer, monkeypatch)
    with pytest.raises(PermissionDenied):
        mlplane.data.get(remote.ref).path()
    with pytest.raises(PermissionDenied):
        mlplane.data.sql(f"SELECT count(*) FROM '{remote.ref}'")
    assert len(mlplane.data.get(remote.masked).to_pandas()) == 3
