"""Tokens on the inference routes: 401 without or with a bad one, 403 without the predict
permission, the Basic password works, revocation takes effect within the cache TTL."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest

from mlplane.serving.inference import auth as auth_module
from tests.serving.inference.conftest import ME, Running, Store, make_store, serve, split, wait_for


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Running]]:
    store = make_store(tmp_path_factory.mktemp("inference-auth"))
    store.svc.deployments.create(ME, "main", "m@1")
    ids = store.svc.identities
    for name, role in (("vic", "viewer"), ("cora", "contributor")):
        ids.create_identity(ME, name)
        ids.grant(ME, name, "default", role)
    saved = auth_module.TTL_S
    auth_module.TTL_S = 0.5  # read when the app is made: revocation shows within 0.5 s
    try:
        running = serve(store.svc, auth="token")
    finally:
        auth_module.TTL_S = saved
    yield store, running
    running.stop()
    store.svc.close()


def test_tokens_and_the_predict_permission(guarded: tuple[Store, Running]) -> None:
    store, running = guarded
    ids = store.svc.identities
    vic, cora = ids.create_token(ME, "vic").secret, ids.create_token(ME, "cora").secret
    body = split(store.x[:2])
    with httpx.Client(base_url=running.url, timeout=30) as http:
        # Probes and metrics are open; everything else needs a token.
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get("/metrics").status_code == 200
        for path in ("/v2/models/main/infer", "/invocations", "/api/v1/deployments/main/predict"):
            r = http.post(path, json=body)
            assert r.status_code == 401 and "www-authenticate" in r.headers, path
        assert http.get("/v2/models/main").status_code == 401
        bad = {"Authorization": "Bearer mlp_not-a-real-token"}
        assert http.post("/invocations", json=body, headers=bad).status_code == 401

        def predict(secret: str) -> int:
            h = {"Authorization": f"Bearer {secret}"}
            return http.post("/api/v1/deployments/main/predict", json=body, headers=h).status_code

        assert predict(vic) == 403  # a viewer may read, not predict
        v = http.get("/v2/models/main", headers={"Authorization": f"Bearer {vic}"})
        assert v.status_code == 200
        assert predict(cora) == 200
        basic = base64.b64encode(f"user:{cora}".encode()).decode()
        r = http.post("/invocations", json=body, headers={"Authorization": f"Basic {basic}"})
        assert r.status_code == 200 and r.json()["predictions"]
        fb = http.post(
            "/api/v1/deployments/main/feedback",
            json={"request_id": "r1-x", "label": 1},
            headers={"Authorization": f"Bearer {vic}"},
        )
        assert fb.status_code == 403


def test_a_revoked_token_is_refused_after_the_cache_ttl(guarded: tuple[Store, Running]) -> None:
    store, running = guarded
    ids = store.svc.identities
    token = ids.create_token(ME, "cora")
    h = {"Authorization": f"Bearer {token.secret}"}
    body = split(store.x[:1])
    with httpx.Client(base_url=running.url, timeout=30) as http:
        assert http.post("/invocations", json=body, headers=h).status_code == 200
        ids.revoke_token(ME, token.info.token_id)
        revoked = time.monotonic()
        refused = wait_for(
            lambda: http.post("/invocations", json=body, headers=h).status_code == 401, 5
        )
        assert refused and time.monotonic() - revoked < 2.0
