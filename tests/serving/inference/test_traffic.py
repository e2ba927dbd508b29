"""Traffic through a real server: sticky and weighted splits, hot reload under load, shadow
mirroring, micro-batching, feedback, the windows in the store, /metrics, scale to zero."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import select

from mlplane.db.engine import now_ms
from mlplane.serving.tables import FeedbackRow
from tests.serving.inference.conftest import ME, Running, Sink, Store, deploy, split, wait_for


def _version(http: httpx.Client, name: str, body: object, **headers: str) -> int:
    r = http.post(f"/api/v1/deployments/{name}/predict", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return int(r.json()["version"])


def _live(running: Running, name: str, versions: set[int]) -> bool:
    for h in running.app.state.host.hosted.values():
        if h.deployment.name == name and h.served is not None:
            return set(h.served.versions) == versions
    return False


def test_sticky_callers_keep_their_variant_and_the_split_is_weighted(
    store: Store, running: Running, http: httpx.Client
) -> None:
    name = deploy(store, running)
    deployments, body = store.svc.deployments, split(store.x[:1])
    deployments.start_ab(ME, name, [("m@1", 50), ("m@2", 50)], sticky_header="X-User")
    assert wait_for(lambda: _live(running, name, {1, 2}))
    seen = {
        u: {_version(http, name, body, **{"X-User": f"u{u}"}) for _ in range(3)} for u in range(30)
    }
    assert all(len(v) == 1 for v in seen.values())  # each caller keeps one variant
    assert 5 <= sum(v == {2} for v in seen.values()) <= 25  # and both get callers
    deployments.start_ab(ME, name, [("m@1", 80), ("m@2", 20)])
    assert wait_for(lambda: running.app.state.host.find(name).served.sticky is None)
    picks = [_version(http, name, body) for _ in range(300)]
    assert 0.10 <= picks.count(2) / len(picks) <= 0.30


def test_a_new_split_is_live_within_2_s_without_a_failed_request(
    store: Store, running: Running
) -> None:
    name = deploy(store, running)
    stop, answers, failures = threading.Event(), [], []
    body = split(store.x[:3])

    def loop() -> None:
        with httpx.Client(base_url=running.url, timeout=30) as c:
            while not stop.is_set():
                sent = time.monotonic()
                r = c.post(f"/api/v1/deployments/{name}/predict", json=body)
                if r.status_code == 200:
                    answers.append((sent, r.json()["version"]))
                else:
                    failures.append((r.status_code, r.text))

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        changed = time.monotonic()
        store.svc.deployments.set_split(ME, name, "m@2")
        assert wait_for(lambda: any(v == 2 for _, v in answers), 5)
        first = min(t for t, v in answers if v == 2)  # sent when version 2 was in force
        assert first - changed < 2.0
        time.sleep(0.4)
        # Every request sent once an answer of version 2 came back is answered by it.
        assert {v for t, v in answers if t > first} == {2}
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    # Version 1 is no longer routed: its predict thread ends once its requests are answered.
    assert wait_for(lambda: _live(running, name, {2}))


def test_shadow_is_mirrored_counted_and_a_failing_shadow_never_reaches_callers(
    store: Store, running: Running
) -> None:
    name = deploy(store, running)
    d = store.svc.deployments.set_shadow(ME, name, "m@3", 100)  # version 3 raises on class 1
    assert wait_for(lambda: _live(running, name, {1, 3}))
    x = store.x[store.models[2].predict(store.x) == 1][:4]
    start = now_ms()
    with httpx.Client(base_url=running.url, timeout=30) as c:
        for _ in range(25):
            r = c.post(f"/api/v1/deployments/{name}/predict", json=split(x))
            assert r.status_code == 200 and r.json()["version"] == 1
            assert r.json()["predictions"] == store.models[1].predict(x).tolist()

    def shadow() -> object:
        got = store.svc.deployments.traffic_since(
            d.deployment_id, start - 1, now_ms() + 1, kind="shadow"
        )
        return got if got.get(3) and got[3].requests >= 25 else None

    seen = wait_for(shadow)
    assert seen and seen[3].errors == seen[3].requests  # every mirror failed, counted
    live = store.svc.deployments.traffic_since(d.deployment_id, start - 1, now_ms() + 1)
    assert live[1].requests >= 25 and live[1].errors == 0


def test_a_good_shadow_is_counted_with_its_outputs(store: Store, running: Running) -> None:
    name = deploy(store, running)
    d = store.svc.deployments.set_shadow(ME, name, "m@2", 100)
    assert wait_for(lambda: _live(running, name, {1, 2}))
    start = now_ms()
    with httpx.Client(base_url=running.url, timeout=30) as c:
        for i in range(20):
            assert (
                c.post(
                    f"/api/v1/deployments/{name}/predict", json=split(store.x[i : i + 1])
                ).status_code
                == 200
            )

    def shadow() -> object:
        got = store.svc.deployments.traffic_since(
            d.deployment_id, start - 1, now_ms() + 1, kind="shadow"
        )
        return got if got.get(2) and got[2].requests >= 20 else None

    seen = wait_for(shadow)
    assert seen and seen[2].errors == 0 and seen[2].outputs.count >= 20


def test_concurrent_requests_are_batched_and_each_gets_its_answer(
    store: Store, running: Running
) -> None:
    name = deploy(store, running, batching="on", max_batch_size=64, max_wait_ms=5)
    d = store.svc.deployments.get(ME, name)
    start = now_ms()
    rows = [store.x[i : i + 1] for i in range(160)]

    def one(i: int) -> bool:
        with httpx.Client(base_url=running.url, timeout=30) as c:
            r = c.post(f"/api/v1/deployments/{name}/predict", json=split(rows[i]))
            return r.json()["predictions"] == store.models[1].predict(rows[i]).tolist()

    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(one, range(160)))

    def windows() -> object:
        got = store.svc.deployments.traffic_since(d.deployment_id, start - 1, now_ms() + 1)
        return got if got.get(1) and got[1].requests >= 160 else None

    seen = wait_for(windows)
    assert seen and seen[1].rows == 160 and seen[1].errors == 0
    assert seen[1].batch_sizes.max > 1  # some requests shared a predict call
    text = httpx.get(running.url + "/metrics").text
    assert f'mlplane_inference_requests_total{{deployment="{name}",kind="live",status="2xx"' in text
    assert f'mlplane_inference_batch_rows_bucket{{deployment="{name}"' in text


def test_feedback_lands_with_the_version_and_prediction(
    store: Store, running: Running, http: httpx.Client
) -> None:
    name = deploy(store, running, "m@2")
    x = store.x[:1]
    mine = http.post(
        f"/api/v1/deployments/{name}/predict",
        json=split(x),
        headers={"X-Request-Id": f"{name}-caller-1"},
    )
    made = http.post(f"/api/v1/deployments/{name}/predict", json=split(x)).json()["request_id"]
    one = http.post(
        f"/api/v1/deployments/{name}/feedback",
        json={"request_id": mine.headers["x-request-id"], "label": 1},
    )
    assert one.json() == {"recorded": 1}
    bulk = http.post(f"/v2/models/{name}/feedback", json=[{"request_id": made, "label": 0}])
    assert bulk.json() == {"recorded": 1}
    assert http.post(f"/v2/models/{name}/feedback", json=[{"label": 0}]).status_code == 400
    with store.svc.db.read() as s:
        rows = {
            r.request_id: (r.version, r.prediction)
            for r in s.scalars(
                select(FeedbackRow).where(
                    FeedbackRow.request_id.like(f"%{name}%") | (FeedbackRow.request_id == made)
                )
            )
        }
    expected = store.models[2].predict(x).tolist()
    # The caller's own id carries no version: the worker's map of recent requests has it.
    assert rows[f"{name}-caller-1"] == (2, json.dumps(expected))
    assert rows[made] == (2, json.dumps(expected))


def test_scale_to_zero_unloads_and_a_request_cold_starts(
    store: Store, running: Running, http: httpx.Client
) -> None:
    name = deploy(store, running, served=False, min_replicas=0, scale_to_zero_after_s=0.5)
    hosted = running.app.state.host.find(name)
    assert hosted.served is None and hosted.cold_starts == 0  # loaded once, idle: unloaded
    assert http.get(f"/v2/models/{name}/ready").json() == {
        "name": name,
        "ready": True,
        "loaded": False,
    }
    r = http.post(f"/api/v1/deployments/{name}/predict", json=split(store.x[:2]))
    assert r.status_code == 200 and r.json()["version"] == 1
    assert hosted.cold_starts == 1 and hosted.cold_start_ms > 0

    def reported() -> object:
        workers = store.svc.deployments.status(ME, name).workers
        return workers if workers and workers[0].get("cold_start_ms") else None

    workers = wait_for(reported)
    assert workers and workers[0]["cold_start_ms"] == hosted.cold_start_ms
    assert f'mlplane_inference_cold_starts_total{{deployment="{name}"' in http.get("/metrics").text


def test_a_deleted_deployment_disappears(
    store: Store, running: Running, http: httpx.Client
) -> None:
    name = deploy(store, running)
    store.svc.deployments.delete(ME, name)
    gone = wait_for(
        lambda: (
            http.post(f"/api/v1/deployments/{name}/predict", json=split(store.x[:1])).status_code
            == 404
        ),
        2,
    )
    assert gone


def test_sampled_payloads_go_to_the_capture_sink(
    store: Store, running: Running, sink: Sink, http: httpx.Client
) -> None:
    name = deploy(store, running, capture_percent=100, sensitive=["f3"])
    quiet = deploy(store, running)
    x = store.x[:2]
    r = http.post(f"/api/v1/deployments/{name}/predict", json=split(x))
    http.post(f"/api/v1/deployments/{quiet}/predict", json=split(x))
    # Captured after the answer is sent: it may land a moment after the client has it.
    assert wait_for(lambda: [rec for _, rec in sink.records if rec.deployment == name], 5)
    mine = [rec for _, rec in sink.records if rec.deployment == name]
    assert len(mine) == 1 and not [rec for _, rec in sink.records if rec.deployment == quiet]
    rec = mine[0]
    assert rec.request_id == r.headers["x-request-id"] and (rec.version, rec.kind) == (1, "live")
    assert rec.inputs == x.to_dict(orient="records") and rec.sensitive == ("f3",)
    assert rec.outputs == store.models[1].predict(x).tolist() and rec.status == 200
