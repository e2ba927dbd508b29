"""A real server with token authentication (no ``MLPLANE_AUTH=none``): who gets in, and
what each role may do through /api/v1 and through the stock MLflow client."""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

import mlplane
from mlplane.client import Client
from mlplane.config import load_settings
from mlplane.errors import PermissionDenied, Unauthenticated
from mlplane.security import local_admin
from mlplane.services import Services
from tests.conftest import ServerProcess

ROOT = local_admin("root")


@dataclass
class Authed:
    url: str
    services: Services
    admin: str
    viewer: str
    contributor: str
    elsewhere: str
    expired: str
    revoked: str


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authed]:
    home = tmp_path_factory.mktemp("authed")
    svc = Services.from_settings(load_settings(home=home))
    ids = svc.identities
    admin = ids.bootstrap(ROOT, "boss").secret
    for name, project, role in [
        ("vic", "default", "viewer"),
        ("cora", "default", "contributor"),
        ("oscar", "*", "contributor"),
    ]:
        ids.create_identity(ROOT, name)
        ids.grant(ROOT, name, project, role)
    expired = ids.create_token(ROOT, "cora", expires_in_ms=1).secret
    revoked = ids.create_token(ROOT, "cora")
    ids.revoke_token(ROOT, revoked.info.token_id)
    time.sleep(0.005)  # let the 1 ms token run out
    srv = ServerProcess(home, env={"MLPLANE_AUTH": "token"})
    try:
        yield Authed(
            url=srv.url,
            services=svc,
            admin=admin,
            viewer=ids.create_token(ROOT, "vic").secret,
            contributor=ids.create_token(ROOT, "cora").secret,
            elsewhere=ids.create_token(ROOT, "oscar", project="other").secret,
            expired=expired,
            revoked=revoked.secret,
        )
    finally:
        srv.stop()
        svc.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sdk(a: Authed, token: str) -> Client:
    return Client(settings=load_settings(uri=a.url, token=token, retry_max_s=0))


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/health", "/version"])
def test_health_routes_stay_open(authed: Authed, path: str) -> None:
    assert httpx.get(authed.url + path, timeout=10).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/experiments", "/openapi.json", "/docs", "/nowhere"])
def test_no_token_is_401_problem(authed: Authed, path: str) -> None:
    resp = httpx.get(authed.url + path, timeout=10)
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "UNAUTHENTICATED"
    assert "Bearer" in resp.headers["www-authenticate"]


def test_no_token_on_mlflow_routes_is_mlflows_401(authed: Authed) -> None:
    resp = httpx.get(authed.url + "/api/2.0/mlflow/experiments/search", timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error_code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("which", ["bad", "expired", "revoked"])
def test_bad_expired_and_revoked_tokens_are_401(authed: Authed, which: str) -> None:
    token = {"bad": "mlp_" + "x" * 43, "expired": authed.expired, "revoked": authed.revoked}[which]
    resp = httpx.get(authed.url + "/api/v1/experiments", headers=_bearer(token), timeout=10)
    assert resp.status_code == 401 and token not in resp.text
    with pytest.raises(Unauthenticated):
        _sdk(authed, token).list_experiments()


def test_basic_auth_with_a_token_as_password(authed: Authed) -> None:
    ok = httpx.get(authed.url + "/api/v1/experiments", auth=("anyone", authed.viewer), timeout=10)
    assert ok.status_code == 200
    wrong = httpx.get(authed.url + "/api/v1/experiments", auth=("vic", "secret"), timeout=10)
    assert wrong.status_code == 401
    garbled = {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()}
    assert httpx.get(authed.url + "/api/v1/experiments", headers=garbled).status_code == 401


def test_viewer_reads_but_cannot_write_and_admin_can(authed: Authed) -> None:
    name = f"exp-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=authed.url, timeout=10) as http:
        created = http.post(
            "/api/v1/experiments", json={"name": name}, headers=_bearer(authed.admin)
        )
        assert created.status_code == 201, created.text
        listed = http.get("/api/v1/experiments", headers=_bearer(authed.viewer))
        assert listed.status_code == 200 and name in listed.text
        denied = http.post(
            "/api/v1/experiments", json={"name": name + "-v"}, headers=_bearer(authed.viewer)
        )
        assert denied.status_code == 403 and denied.json()["code"] == "PERMISSION_DENIED"


def test_tracking_viewer_cannot_create_a_run_contributor_can(authed: Authed) -> None:
    eid = _sdk(authed, authed.admin).create_experiment(f"runs-{uuid.uuid4().hex[:8]}")
    viewer, contributor = _sdk(authed, authed.viewer), _sdk(authed, authed.contributor)
    with pytest.raises(PermissionDenied, match="vic needs the 'write' permission"):
        viewer.create_run(eid)
    run = contributor.create_run(eid, run_name="ok")
    assert run.info.user_id == "cora"
    assert viewer.get_run(run.info.run_id).info.run_name == "ok"


def _as(authed: Authed, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fluent SDK reads MLPLANE_TOKEN like any user's script would."""
    monkeypatch.setenv("MLPLANE_TOKEN", token)
    mlplane.set_tracking_uri(authed.url)


def test_datasets_viewer_cannot_add_contributor_can(
    authed: Authed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "d.csv"
    source.write_text("a,b\n1,2\n3,4\n")
    name = f"ds-{uuid.uuid4().hex[:8]}"
    _as(authed, authed.viewer, monkeypatch)
    with pytest.raises(PermissionDenied):
        mlplane.data.add(name, source)
    _as(authed, authed.contributor, monkeypatch)
    assert mlplane.data.add(name, source).version == 1


def test_registry_viewer_cannot_register_contributor_can(
    authed: Authed, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    model = DecisionTreeClassifier(max_depth=2).fit(x, (x["a"] > 9).astype(int))
    name = f"m-{uuid.uuid4().hex[:8]}"
    _as(authed, authed.viewer, monkeypatch)
    with pytest.raises(PermissionDenied):
        mlplane.registry.register(name, model)
    _as(authed, authed.contributor, monkeypatch)
    assert mlplane.registry.register(name, model).version == 1


def test_a_token_scoped_to_another_project_is_refused(authed: Authed) -> None:
    eid = _sdk(authed, authed.admin).create_experiment(f"scoped-{uuid.uuid4().hex[:8]}")
    oscar = _sdk(authed, authed.elsewhere)
    with pytest.raises(PermissionDenied, match="'default'"):
        oscar.get_experiment(eid)
    with pytest.raises(PermissionDenied):
        oscar.create_run(eid)
    assert oscar.create_experiment("mine", project="other")


def test_revoking_and_disabling_take_effect_at_the_next_request(authed: Authed) -> None:
    ids, name = authed.services.identities, f"tmp-{uuid.uuid4().hex[:6]}"
    eid = _sdk(authed, authed.admin).create_experiment(name)
    ids.create_identity(ROOT, name)
    ids.grant(ROOT, name, "default", "viewer")
    made = ids.create_token(ROOT, name)
    url = authed.url + "/api/v1/experiments"
    assert httpx.get(url, headers=_bearer(made.secret)).status_code == 200
    ids.revoke_role(ROOT, name, "default")
    assert httpx.get(f"{url}/{eid}", headers=_bearer(made.secret)).status_code == 403
    ids.set_disabled(ROOT, name)
    assert httpx.get(url, headers=_bearer(made.secret)).status_code == 401
    ids.set_disabled(ROOT, name, disabled=False)
    ids.revoke_token(ROOT, made.info.token_id)
    assert httpx.get(url, headers=_bearer(made.secret)).status_code == 401


def _mlflow_env(monkeypatch: pytest.MonkeyPatch, **creds: str) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    for var in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    for var, value in creds.items():
        monkeypatch.setenv(var, value)


def test_stock_mlflow_client_with_a_token(authed: Authed, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=authed.url)
    _mlflow_env(monkeypatch)
    with pytest.raises(MlflowException, match="UNAUTHENTICATED"):
        client.create_experiment(f"mlf-{uuid.uuid4().hex[:8]}")
    _mlflow_env(monkeypatch, MLFLOW_TRACKING_TOKEN=authed.contributor)
    eid = client.create_experiment(f"mlf-{uuid.uuid4().hex[:8]}")
    run = client.create_run(eid)
    client.log_metric(run.info.run_id, "acc", 0.9)
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.9}
    basic = {"MLFLOW_TRACKING_USERNAME": "vic", "MLFLOW_TRACKING_PASSWORD": authed.viewer}
    _mlflow_env(monkeypatch, **basic)
    assert client.get_run(run.info.run_id).info.run_id == run.info.run_id
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        client.create_run(eid)


def test_stock_client_multipart_upload_with_a_token(
    authed: Authed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The client sends parts to the URLs the server handed out, without credentials (as to
    presigned URLs): the upload id is the capability, the rest of the upload needs a token."""
    from mlflow import MlflowClient

    _mlflow_env(monkeypatch, MLFLOW_TRACKING_TOKEN=authed.contributor)
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1024")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(100_000))
    client = MlflowClient(tracking_uri=authed.url)
    run = client.create_run(client.create_experiment(f"mpu-{uuid.uuid4().hex[:8]}"))
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(350_000))
    client.log_artifact(run.info.run_id, str(src))
    out = client.download_artifacts(run.info.run_id, "big.bin", str(tmp_path / "out"))
    assert Path(out).read_bytes() == src.read_bytes()
    # Without credentials only a part upload to a live upload id gets through.
    part = authed.url + "/api/2.0/mlflow-artifacts/mpu/parts/" + uuid.uuid4().hex + "/1"
    assert httpx.put(part, content=b"x", timeout=10).status_code == 404
    other = authed.url + "/api/2.0/mlflow-artifacts/mpu/create/x"
    assert httpx.post(other, json={"path": "y", "num_parts": 1}, timeout=10).status_code == 401
