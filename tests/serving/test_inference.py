"""The inference app behind a real uvicorn server on a loopback port, over a real embedded
store: the three protocols, signature errors as 4xx, hot reload under load, shadow,
feedback, traffic windows in the store, micro-batching, scale to zero and token auth."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mlplane.config import load_settings
from mlplane.db.engine import now_ms
from mlplane.security import Principal, local_admin
from mlplane.services import Services
from mlplane.serving.inference.app import create_inference_app

ME = local_admin("tester")
COLUMNS = ["a", "b", "c", "d"]


@dataclass
class Running:
    url: str
    svc: Services
    x: pd.DataFrame
    models: list[object]
    server: uvicorn.Server


def _serve(svc: Services, auth: str) -> tuple[uvicorn.Server, threading.Thread, str]:
    app = create_inference_app(svc, worker_id="test-worker", auth=auth, poll_s=0.2, flush_s=0.3)
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2).status_code == 200:
                return server, thread, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the inference app did not become ready")


def _store(home: Path) -> tuple[Services, pd.DataFrame, list[object]]:
    svc = Services.from_settings(load_settings(home=home))
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(200, 4)), columns=COLUMNS)
    y = (x["a"] + x["b"] > 0).astype(int)
    models: list[object] = [
        LogisticRegression().fit(x, y),
        DecisionTreeClassifier(max_depth=1).fit(x, 1 - y),  # answers differently on purpose
    ]
    for m in models:
        svc.registry.register(ME, "m", m, input_example=x[:5])
    svc.deployments.create(ME, "d", "m@1", config={"batching": "on", "max_wait_ms": 5})
    return svc, x, models


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    svc, x, models = _store(tmp_path_factory.mktemp("inference"))
    server, thread, url = _serve(svc, "none")
    yield Running(url, svc, x, models, server)
    server.should_exit = True
    thread.join(30)
    svc.close()


def _split(x: pd.DataFrame) -> dict[str, object]:
    return {"dataframe_split": {"columns": list(x.columns), "data": x.to_numpy().tolist()}}


def test_the_three_protocols_answer_the_model(running: Running) -> None:
    x, model = running.x[:7], running.models[0]
    want = model.predict(x).tolist()  # type: ignore[attr-defined]
    with httpx.Client(base_url=running.url, timeout=30) as http:
        meta = http.get("/v2/models/d").json()
        assert meta["name"] == "d" and [i["name"] for i in meta["inputs"]] == COLUMNS
        assert http.get("/v2/models/d/ready").status_code == 200
        assert http.get("/v2").json()["name"]
        tensor = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [7, 4],
                    "datatype": "FP64",
                    "data": x.to_numpy().ravel().tolist(),
                }
            ]
        }
        out = http.post("/v2/models/d/infer", json=tensor)
        assert out.status_code == 200, out.text
        body = out.json()
        assert body["model_name"] == "d" and body["outputs"][0]["data"] == want
        assert out.headers["x-request-id"].startswith("r1-")
        columns = {
            "inputs": [
                {"name": c, "shape": [7], "datatype": "FP64", "data": x[c].tolist()}
                for c in COLUMNS
            ]
        }
        assert http.post("/v2/models/d/infer", json=columns).json()["outputs"][0]["data"] == want
        for form in (
            _split(x),
            {"dataframe_records": x.to_dict(orient="records")},
            {"instances": x.to_dict(orient="records")},
            {"inputs": {c: x[c].tolist() for c in COLUMNS}},
        ):
            got = http.post("/invocations", json=form)
            assert got.status_code == 200, (form.keys(), got.text)
            assert got.json()["predictions"] == want
        plain = http.post("/api/v1/deployments/d/predict", json=_split(x)).json()
        assert plain["predictions"] == want and plain["version"] == 1
        assert http.post("/v2/models/d/versions/1/infer", json=tensor).status_code == 200


def test_bad_payloads_are_4xx_naming_the_field(running: Running) -> None:
    x = running.x[:3]
    cases = [
        (_split(x.drop(columns=["c"])), "c"),
        (
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [3, 3],
                        "datatype": "FP64",
                        "data": x.to_numpy()[:, :3].ravel().tolist(),
                    }
                ]
            },
            "shape",
        ),
        (
            {
                "inputs": [
                    {"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": [1.0, 2.0]}
                ]
            },
            "shape",
        ),
        ({"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}, "a"),
        ({"nothing": 1}, "inputs"),
    ]
    with httpx.Client(base_url=running.url, timeout=30) as http:
        for body, needle in cases:
            out = http.post("/v2/models/d/infer", json=body)
            assert 400 <= out.status_code < 500, (body, out.status_code, out.text)
            assert needle in out.text, out.text
        raw = http.post(
            "/invocations", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert 400 <= raw.status_code < 500
        assert http.post("/v2/models/nope/infer", json=cases[0][0]).status_code == 404
        assert http.post("/v2/models/d/versions/9/infer", json=cases[0][0]).status_code in (
            400,
            404,
        )


def test_changes_go_live_without_dropping_a_request(running: Running) -> None:
    svc, x = running.svc, running.x[:5]
    stop, versions, failures = threading.Event(), [], []

    def loop() -> None:
        with httpx.Client(base_url=running.url, timeout=30) as http:
            while not stop.is_set():
                r = http.post("/api/v1/deployments/d/predict", json=_split(x))
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    versions.append((time.monotonic(), r.json()["version"]))

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        changed = time.monotonic()
        svc.deployments.set_split(ME, "d", "m@2")
        deadline = changed + 5
        while time.monotonic() < deadline and not any(v == 2 and t > changed for t, v in versions):
            time.sleep(0.05)
        first_v2 = min(t for t, v in versions if v == 2 and t > changed)
        assert first_v2 - changed < 2.0
        time.sleep(0.5)
        late = [v for t, v in versions if t > first_v2 + 0.3]
        assert late and set(late) == {2}
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        svc.deployments.set_split(ME, "d", "m@1")
    assert failures == []
    time.sleep(0.5)


def test_sticky_variants_keep_each_caller(running: Running) -> None:
    svc, x = running.svc, running.x[:1]
    svc.deployments.start_ab(ME, "d", [("m@1", 50), ("m@2", 50)], sticky_header="X-User-Id")
    time.sleep(1.0)
    seen: dict[str, set[int]] = {}
    with httpx.Client(base_url=running.url, timeout=30) as http:
        for user in range(40):
            for _ in range(3):
                r = http.post(
                    "/api/v1/deployments/d/predict",
                    json=_split(x),
                    headers={"X-User-Id": f"user-{user}"},
                )
                assert r.status_code == 200
                seen.setdefault(f"user-{user}", set()).add(r.json()["version"])
    assert all(len(v) == 1 for v in seen.values())  # each caller kept one variant
    counts = [sum(1 for v in seen.values() if v == {n}) for n in (1, 2)]
    assert min(counts) >= 8  # and the callers are spread over both
    svc.deployments.set_split(ME, "d", "m@1")
    time.sleep(1.0)


def test_shadow_feedback_windows_and_batching(running: Running) -> None:
    svc, x = running.svc, running.x[:1]
    d = svc.deployments.set_shadow(ME, "d", "m@2", 100)
    time.sleep(1.0)  # picked up at the next poll
    start = now_ms()
    ids = []

    def one(_: int) -> str:
        with httpx.Client(base_url=running.url, timeout=30) as http:
            r = http.post("/api/v1/deployments/d/predict", json=_split(x))
            assert r.status_code == 200 and r.json()["version"] == 1
            return r.headers["x-request-id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(one, range(160)))
    with httpx.Client(base_url=running.url, timeout=30) as http:
        fb = http.post(
            "/api/v1/deployments/d/feedback",
            json=[{"request_id": rid, "label": 1} for rid in ids[:10]],
        )
        assert fb.status_code in (200, 204), fb.text
    deadline = time.monotonic() + 10
    live = shadow = None
    while time.monotonic() < deadline:
        live = svc.deployments.traffic_since(d.deployment_id, start - 1, now_ms() + 1)
        shadow = svc.deployments.traffic_since(
            d.deployment_id, start - 1, now_ms() + 1, kind="shadow"
        )
        if live.get(1) and live[1].requests >= 160 and shadow.get(2) and shadow[2].requests >= 100:
            break
        time.sleep(0.3)
    assert live and live[1].requests >= 160 and live[1].errors == 0
    assert shadow and shadow[2].requests >= 100  # mirrored, never answered to the caller
    assert live[1].batch_sizes.max is not None and live[1].batch_sizes.max > 1  # batched
    report = svc.deployments.ab_report(ME, "d", since_s=600)
    assert report["variants"][0]["feedback"] == 10
    svc.deployments.set_shadow(ME, "d", None, 0)


def test_scale_to_zero_and_cold_start(running: Running) -> None:
    svc, x = running.svc, running.x[:2]
    d = svc.deployments.create(
        ME, "idle", "m@1", config={"min_replicas": 0, "scale_to_zero_after_s": 1}
    )
    host = running.server.config.app.state.host
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # loaded at the poll, then unloaded when idle
        hosted = host.hosted.get(d.deployment_id)
        if hosted is not None and d.deployment_id in host.generations and hosted.served is None:
            break
        time.sleep(0.05)
    assert hosted is not None and hosted.served is None and hosted.cold_starts == 0
    with httpx.Client(base_url=running.url, timeout=60) as http:
        r = http.post("/api/v1/deployments/idle/predict", json=_split(x))
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        st = svc.deployments.status(ME, "idle")
        if st.workers and st.workers[0].get("cold_start_ms"):
            break
        time.sleep(0.3)
    assert st.workers and st.workers[0]["cold_start_ms"] > 0


def test_tokens_with_the_predict_permission(tmp_path: Path) -> None:
    svc, x, _ = _store(tmp_path / "auth")
    ids = svc.identities
    for name, role in (("vic", "viewer"), ("cora", "contributor"), ("app", "predictor")):
        ids.create_identity(ME, name)
        ids.grant(ME, name, "default", role)
    tokens = {n: ids.create_token(ME, n).secret for n in ("vic", "cora", "app")}
    tokens["other"] = ids.create_token(ME, "cora", project="default", deployment="other").secret
    server, thread, url = _serve(svc, "token")
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            body = _split(x[:2])
            assert http.post("/v2/models/d/infer", json=body).status_code == 401
            assert http.get("/v2/health/ready").status_code == 200  # probes need no token

            def call(who: str) -> int:
                h = {"Authorization": f"Bearer {tokens[who]}"}
                return http.post("/invocations", json=body, headers=h).status_code

            assert call("vic") == 403 and call("other") == 403
            assert call("cora") == 200 and call("app") == 200
            bad = {"Authorization": "Bearer mlp_not-a-real-token"}
            assert http.post("/invocations", json=body, headers=bad).status_code == 401
    finally:
        server.should_exit = True
        thread.join(30)
        svc.close()


def test_internal_principal_is_needed_for_the_worker_calls(tmp_path: Path) -> None:
    svc, _, _ = _store(tmp_path / "p")
    try:
        outsider = Principal("x", roles={"default": "admin"}, source="t")
        with pytest.raises(Exception, match="platform admin"):
            svc.deployments.generations(outsider)
    finally:
        svc.close()


def test_a_failing_shadow_never_touches_the_caller_and_metrics_count(tmp_path: Path) -> None:
    svc, x, models = _store(tmp_path / "shadow")
    y = (x["a"] + x["b"] > 0).astype(int)
    # A broken fitted state (the classes lost their second label): its example rows
    # predict, so registration and warm-up pass; rows of the other class raise inside
    # scikit-learn, a real 5xx of the shadow version.
    broken = LogisticRegression().fit(x, y)
    first = x[broken.predict(x) == 0]
    broken.classes_ = broken.classes_[:1]
    svc.registry.register(ME, "m", broken, input_example=first[:5])
    svc.deployments.set_shadow(ME, "d", "m@3", 100)
    failing = x[models[0].predict(x) == 1][:5]  # type: ignore[attr-defined]
    server, thread, url = _serve(svc, "none")
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(30):
                r = http.post("/api/v1/deployments/d/predict", json=_split(failing))
                assert r.status_code == 200
                assert r.json()["predictions"] == models[0].predict(failing).tolist()  # type: ignore[attr-defined]
            d = svc.deployments.get(ME, "d")
            deadline = time.monotonic() + 10
            shadow = {}
            while time.monotonic() < deadline:
                shadow = svc.deployments.traffic_since(
                    d.deployment_id, 0, now_ms() + 1, kind="shadow"
                )
                if shadow.get(3) and shadow[3].requests >= 30:
                    break
                time.sleep(0.3)
            assert shadow[3].errors == shadow[3].requests >= 30  # every mirror failed
            text = http.get("/metrics").text
            assert 'deployment="d"' in text
    finally:
        server.should_exit = True
        thread.join(30)
        svc.close()
