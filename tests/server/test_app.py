"""The REST server through a real socket: health, errors, limits, OpenAPI, metrics."""

from __future__ import annotations

import httpx
import pytest

from mlplane import errors
from mlplane.server.errors import STATUS, status_for
from tests.conftest import ServerProcess


def _all_error_classes(cls: type = errors.MlplaneError) -> set[type]:
    out = {cls}
    for sub in cls.__subclasses__():
        out |= _all_error_classes(sub)
    return out


def test_every_error_class_has_one_status() -> None:
    missing = {c.__name__ for c in _all_error_classes() if c not in STATUS}
    assert not missing, f"add these to mlplane.server.errors.STATUS: {missing}"
    assert status_for(errors.NotFound("x")) == 404
    assert status_for(errors.Conflict("x")) == 409
    assert len({c.code for c in _all_error_classes()}) == len(_all_error_classes())


def test_every_error_code_maps_back_in_the_sdk() -> None:
    from mlplane.client.http import ERRORS_BY_CODE

    assert {c for c in _all_error_classes() if c is not errors.MlplaneError} == set(
        ERRORS_BY_CODE.values()
    )


@pytest.fixture
def http(server: ServerProcess) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_health_ready_metrics_openapi(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    http.get("/api/v1/experiments")
    metrics = http.get("/metrics").text
    assert "mlplane_http_requests_total" in metrics and 'route="/api/v1/experiments"' in metrics
    spec = http.get("/openapi.json").json()
    assert "/api/v1/runs/{run_id}/log-batch" in spec["paths"]
    assert "LogBatch" in spec["components"]["schemas"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/v1/experiments", b"{not json", 422),
        ("POST", "/api/v1/experiments", b'{"name": 5}', 422),
        ("POST", "/api/v1/experiments", b"[]", 422),
        ("GET", "/api/v1/experiments/abc", None, 400),
        ("GET", "/api/v1/runs/nothex", None, 400),
        ("GET", "/api/v1/runs/" + "0" * 32, None, 404),
        ("POST", "/api/v1/runs/search", b'{"experiment_ids": ["1"], "filter": "metrics.a >"}', 400),
        ("POST", "/api/v1/runs/search", b'{"experiment_ids": ["1"], "max_results": 0}', 422),
        ("POST", "/api/v1/runs/" + "0" * 32 + "/log-batch", b"garbage", 400),
        (
            "POST",
            "/api/v1/runs/" + "0" * 32 + "/log-batch",
            b'{"metrics": {"key": ["a"], "value": [], "timestamp": [], "step": []}}',
            400,
        ),
        ("GET", "/api/v1/nope", None, 404),
        ("DELETE", "/healthz", None, 405),
    ],
)
def test_bad_input_is_a_4xx_problem(
    http: httpx.Client, method: str, path: str, body: bytes | None, status: int
) -> None:
    resp = http.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["status"] == status and problem["detail"] and problem["code"]
    assert "Traceback" not in resp.text and "/src/" not in resp.text


def test_search_error_points_at_the_column(http: httpx.Client) -> None:
    eid = http.post("/api/v1/experiments", json={"name": "cols"}).json()["experiment_id"]
    resp = http.post(
        "/api/v1/runs/search", json={"experiment_ids": [eid], "filter": "metrics.acc > 1 and"}
    )
    assert resp.status_code == 400 and resp.json()["column"] >= 17


def test_oversized_batch_is_refused_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    srv = ServerProcess(
        tmp_path, env={"MLPLANE_MAX_REQUEST_BYTES": "2000", "MLPLANE_MAX_BATCH_POINTS": "10"}
    )
    try:
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            eid = http.post("/api/v1/experiments", json={"name": "big"}).json()["experiment_id"]
            rid = http.post("/api/v1/runs", json={"experiment_id": eid}).json()["info"]["run_id"]
            n = 11
            cols = {
                "key": ["k"] * n,
                "value": [1.0] * n,
                "timestamp": [1] * n,
                "step": list(range(n)),
            }
            resp = http.post(
                f"/api/v1/runs/{rid}/log-batch", json={"metrics": cols, "params": {"a": "1"}}
            )
            assert resp.status_code == 413 and "limit is 10" in resp.json()["detail"]
            resp = http.post(f"/api/v1/runs/{rid}/log-batch", content=b"x" * 5000)
            assert resp.status_code == 413
            run = http.get(f"/api/v1/runs/{rid}").json()
            assert (
                run["data"]["metrics"] == {} and run["data"]["params"] == {}
            )  # nothing half-written
    finally:
        srv.stop()


def test_nodelay_keeps_small_requests_fast(server: ServerProcess) -> None:
    """Keep-alive requests must not wait on delayed ACKs (~40 ms each): 50 calls well under 2 s."""
    import time

    from mlplane.client import Client

    c = Client(server.url)
    eid = c.create_experiment("nodelay")
    rid = c.create_run(eid).info.run_id
    start = time.perf_counter()
    for i in range(50):
        c.log_metric(rid, "x", float(i), step=i)
    assert time.perf_counter() - start < 2.0
    c.close()
