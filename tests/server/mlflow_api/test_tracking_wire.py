"""MLflow's tracking wire protocol, spoken over raw HTTP to a real server."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

MLFLOW = "/api/2.0/mlflow"
AJAX = "/ajax-api/2.0/mlflow"


def _ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error_code"] == code, body
    message: str = body["message"]
    return message


def _experiment(api: httpx.Client, prefix: str = "wire") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    eid: str = _ok(api.post(MLFLOW + "/experiments/create", json={"name": name}))["experiment_id"]
    return eid


def _run(api: httpx.Client, eid: str, **extra: Any) -> dict[str, Any]:
    body = {"experiment_id": eid, "start_time": int(time.time() * 1000), **extra}
    run: dict[str, Any] = _ok(api.post(MLFLOW + "/runs/create", json=body))["run"]
    return run


def _tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_health_and_version_are_plain_text(api: httpx.Client) -> None:
    health = api.get("/health")
    assert (health.status_code, health.text) == (200, "OK")
    version = api.get("/version")
    assert version.status_code == 200
    major, minor, *_ = version.text.split(".")
    assert int(major) == 3 and int(minor) >= 4  # clients gate newer features on >= 3.4


def test_server_info_offers_multipart_uploads_as_the_client_reads_it(api: httpx.Client) -> None:
    from mlflow.utils.server_info import (
        SERVER_INFO_ENDPOINT,
        SERVER_INFO_MULTIPART_DOWNLOADS_ENABLED,
        SERVER_INFO_MULTIPART_UPLOADS_ENABLED,
    )

    for path in (SERVER_INFO_ENDPOINT, "/ajax-api/3.0/mlflow/server-info"):
        info = api.get(path)
        assert info.status_code == 200
        assert info.json()[SERVER_INFO_MULTIPART_UPLOADS_ENABLED] is True
        assert info.json()[SERVER_INFO_MULTIPART_DOWNLOADS_ENABLED] is False


def test_unknown_endpoints_answer_mlflow_404(api: httpx.Client) -> None:
    for path in (MLFLOW + "/nope", AJAX + "/runs/nope", "/api/2.0/mlflow-artifacts/x/y/z"):
        resp = api.post(path, json={})
        assert resp.status_code == 404
        assert resp.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    # A method the endpoint does not take is not retried by the client either.
    _error(api.get(MLFLOW + "/runs/create"), 404, "ENDPOINT_NOT_FOUND")
    # Our own API keeps problem+json.
    own = api.get("/api/v1/nope")
    assert own.status_code == 404
    assert own.headers["content-type"].startswith("application/problem+json")


def test_experiment_lifecycle_and_errors(api: httpx.Client) -> None:
    name = f"wire-exp-{uuid.uuid4().hex[:10]}"
    eid = _ok(
        api.post(
            MLFLOW + "/experiments/create",
            json={"name": name, "tags": [{"key": "team", "value": "risk"}]},
        )
    )["experiment_id"]
    assert isinstance(eid, str)
    msg = _error(
        api.post(MLFLOW + "/experiments/create", json={"name": name}),
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    assert name in msg
    _error(api.post(MLFLOW + "/experiments/create", json={}), 400, "INVALID_PARAMETER_VALUE")

    exp = _ok(api.get(MLFLOW + "/experiments/get", params={"experiment_id": eid}))["experiment"]
    assert exp["name"] == name and exp["lifecycle_stage"] == "active"
    assert isinstance(exp["creation_time"], int) and isinstance(exp["last_update_time"], int)
    assert exp["tags"] == [{"key": "team", "value": "risk"}]
    assert exp["artifact_location"].startswith("mlflow-artifacts:/")
    by_name = _ok(api.get(MLFLOW + "/experiments/get-by-name", params={"experiment_name": name}))
    assert by_name["experiment"]["experiment_id"] == eid

    assert (
        _ok(
            api.post(
                MLFLOW + "/experiments/update", json={"experiment_id": eid, "new_name": name + "-2"}
            )
        )
        == {}
    )
    tag = {"experiment_id": eid, "key": "stage", "value": "dev"}
    assert _ok(api.post(MLFLOW + "/experiments/set-experiment-tag", json=tag)) == {}
    untag = {"experiment_id": eid, "key": "team"}
    assert _ok(api.post(MLFLOW + "/experiments/delete-experiment-tag", json=untag)) == {}
    _error(
        api.post(MLFLOW + "/experiments/delete-experiment-tag", json=untag),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    exp = _ok(api.get(MLFLOW + "/experiments/get", params={"experiment_id": eid}))["experiment"]
    assert exp["name"] == name + "-2"
    assert exp["tags"] == [{"key": "stage", "value": "dev"}]

    assert _ok(api.post(MLFLOW + "/experiments/delete", json={"experiment_id": eid})) == {}
    exp = _ok(api.get(MLFLOW + "/experiments/get", params={"experiment_id": eid}))["experiment"]
    assert exp["lifecycle_stage"] == "deleted"
    assert _ok(api.post(MLFLOW + "/experiments/restore", json={"experiment_id": eid})) == {}

    _error(
        api.get(MLFLOW + "/experiments/get", params={"experiment_id": "987654321"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    _error(
        api.get(MLFLOW + "/experiments/get-by-name", params={"experiment_name": "no-" + name}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    _error(api.get(MLFLOW + "/experiments/get"), 400, "INVALID_PARAMETER_VALUE")


def test_default_experiment_is_zero(api: httpx.Client) -> None:
    exp = _ok(api.get(MLFLOW + "/experiments/get", params={"experiment_id": "0"}))["experiment"]
    assert (exp["experiment_id"], exp["name"]) == ("0", "Default")
    by_name = _ok(
        api.get(MLFLOW + "/experiments/get-by-name", params={"experiment_name": "Default"})
    )
    assert by_name["experiment"]["experiment_id"] == "0"
    run = _ok(api.post(MLFLOW + "/runs/create", json={"start_time": 1}))["run"]
    assert run["info"]["experiment_id"] == "0"
    found = _ok(
        api.post(MLFLOW + "/runs/search", json={"experiment_ids": ["0"], "max_results": 50000})
    )
    assert run["info"]["run_id"] in {r["info"]["run_id"] for r in found["runs"]}


def test_run_round_trip_with_run_uuid_and_int64_numbers(api: httpx.Client) -> None:
    eid = _experiment(api)
    run = _run(api, eid, run_name="first", tags=[{"key": "k", "value": "v"}])
    info = run["info"]
    rid = info["run_id"]
    assert info["run_uuid"] == rid
    assert (info["run_name"], info["status"], info["lifecycle_stage"]) == (
        "first",
        "RUNNING",
        "active",
    )
    assert isinstance(info["start_time"], int) and "end_time" not in info
    assert _tags(run)["k"] == "v" and _tags(run)["mlflow.runName"] == "first"

    # Older clients send only run_uuid.
    got = _ok(api.get(MLFLOW + "/runs/get", params={"run_uuid": rid}))["run"]
    assert got["info"]["run_id"] == rid
    updated = _ok(
        api.post(
            MLFLOW + "/runs/update",
            json={"run_uuid": rid, "status": "FINISHED", "end_time": 1234, "run_name": "renamed"},
        )
    )["run_info"]
    assert (updated["status"], updated["end_time"], updated["run_name"]) == (
        "FINISHED",
        1234,
        "renamed",
    )
    got = _ok(api.get(AJAX + "/runs/get", params={"run_id": rid}))["run"]  # the UI's prefix
    assert got["info"]["run_name"] == "renamed" and _tags(got)["mlflow.runName"] == "renamed"

    body = {"run_id": rid, "key": "mlflow.runName", "value": "by-tag"}
    assert _ok(api.post(MLFLOW + "/runs/set-tag", json=body)) == {}
    assert (
        _ok(api.get(MLFLOW + "/runs/get", params={"run_id": rid}))["run"]["info"]["run_name"]
        == "by-tag"
    )

    assert _ok(api.post(MLFLOW + "/runs/delete-tag", json={"run_id": rid, "key": "k"})) == {}
    _error(
        api.post(MLFLOW + "/runs/delete-tag", json={"run_id": rid, "key": "k"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert _ok(api.post(MLFLOW + "/runs/delete", json={"run_id": rid})) == {}
    got = _ok(api.get(MLFLOW + "/runs/get", params={"run_id": rid}))["run"]
    assert got["info"]["lifecycle_stage"] == "deleted"
    assert _ok(api.post(MLFLOW + "/runs/restore", json={"run_id": rid})) == {}

    missing = uuid.uuid4().hex
    _error(
        api.get(MLFLOW + "/runs/get", params={"run_id": missing}), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    _error(api.get(MLFLOW + "/runs/get"), 400, "INVALID_PARAMETER_VALUE")
    _error(
        api.post(MLFLOW + "/runs/create", json={"experiment_id": "987654321"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )


def test_a_runs_latest_metrics_carry_their_time_and_step(api: httpx.Client) -> None:
    eid = _experiment(api)
    run_id = _run(api, eid)["info"]["run_id"]
    points = [
        {"key": "loss", "value": 0.5, "timestamp": 1_000, "step": 1},
        {"key": "loss", "value": 0.3, "timestamp": 2_000, "step": 7},
        {"key": "loss", "value": 0.9, "timestamp": 3_000, "step": 2},  # later, lower step
    ]
    _ok(api.post(MLFLOW + "/runs/log-batch", json={"run_id": run_id, "metrics": points}))
    latest = [{"key": "loss", "value": 0.3, "timestamp": 2_000, "step": 7}]
    got = _ok(api.get(MLFLOW + "/runs/get", params={"run_id": run_id}))["run"]
    assert got["data"]["metrics"] == latest
    found = _ok(api.post(MLFLOW + "/runs/search", json={"experiment_ids": [eid]}))["runs"]
    assert [r["data"]["metrics"] for r in found] == [latest]


def test_non_finite_metrics_travel_as_mlflow_sends_them(api: httpx.Client) -> None:
    rid = _run(api, _experiment(api))["info"]["run_id"]
    for step, value in enumerate(["NaN", "Infinity", "-Infinity", 1.5]):
        body = {"run_id": rid, "key": "m", "value": value, "timestamp": 10 + step, "step": step}
        assert _ok(api.post(MLFLOW + "/runs/log-metric", json=body)) == {}
    # Python's json writes bare tokens; they are read too.
    raw = f'{{"run_id": "{rid}", "key": "n", "value": NaN, "timestamp": 5}}'
    resp = api.post(
        MLFLOW + "/runs/log-metric", content=raw, headers={"content-type": "application/json"}
    )
    assert _ok(resp) == {}

    hist = _ok(api.get(MLFLOW + "/metrics/get-history", params={"run_id": rid, "metric_key": "m"}))
    assert [(m["value"], m["step"], m["timestamp"]) for m in hist["metrics"]] == [
        ("NaN", 0, 10),
        ("Infinity", 1, 11),
        ("-Infinity", 2, 12),
        (1.5, 3, 13),
    ]
    assert "next_page_token" not in hist
    run = _ok(api.get(MLFLOW + "/runs/get", params={"run_id": rid}))["run"]
    latest = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert latest == {"m": 1.5, "n": "NaN"}

    bad = {"run_id": rid, "key": "m", "value": "lots", "timestamp": 1}
    _error(api.post(MLFLOW + "/runs/log-metric", json=bad), 400, "INVALID_PARAMETER_VALUE")
    no_ts = {"run_id": rid, "key": "m", "value": 1.0}
    _error(api.post(MLFLOW + "/runs/log-metric", json=no_ts), 400, "INVALID_PARAMETER_VALUE")


def test_metric_history_pages(api: httpx.Client) -> None:
    rid = _run(api, _experiment(api))["info"]["run_id"]
    metrics = [
        {"key": "loss", "value": float(i), "timestamp": 100 + i, "step": i} for i in range(5)
    ]
    _ok(api.post(MLFLOW + "/runs/log-batch", json={"run_id": rid, "metrics": metrics}))
    seen, token = [], None
    for _ in range(5):
        params: dict[str, Any] = {"run_id": rid, "metric_key": "loss", "max_results": 2}
        if token:
            params["page_token"] = token
        page = _ok(api.get(MLFLOW + "/metrics/get-history", params=params))
        seen += [m["step"] for m in page["metrics"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == [0, 1, 2, 3, 4]
    bad = {"run_id": rid, "metric_key": "loss", "max_results": 0}
    _error(api.get(MLFLOW + "/metrics/get-history", params=bad), 400, "INVALID_PARAMETER_VALUE")
    bad = {"run_id": rid, "metric_key": "loss", "page_token": "garbage"}
    _error(api.get(MLFLOW + "/metrics/get-history", params=bad), 400, "INVALID_PARAMETER_VALUE")


def test_bulk_interval_samples_each_run(api: httpx.Client) -> None:
    eid = _experiment(api)
    a, b = (_run(api, eid)["info"]["run_id"] for _ in range(2))
    for rid, n in ((a, 10), (b, 3)):
        metrics = [{"key": "acc", "value": i / 10, "timestamp": i, "step": i} for i in range(n)]
        _ok(api.post(MLFLOW + "/runs/log-batch", json={"run_id": rid, "metrics": metrics}))
    url = AJAX + "/metrics/get-history-bulk-interval"
    out = _ok(api.get(url, params={"run_ids": [a, b], "metric_key": "acc", "max_results": 4}))
    by_run: dict[str, list[int]] = {}
    for m in out["metrics"]:
        by_run.setdefault(m["run_id"], []).append(m["step"])
    assert by_run[a][0] == 0 and by_run[a][-1] == 9 and len(by_run[a]) == 4
    assert by_run[b] == [0, 1, 2]
    ranged = _ok(
        api.get(url, params={"run_ids": [a], "metric_key": "acc", "start_step": 2, "end_step": 4})
    )
    assert [m["step"] for m in ranged["metrics"]] == [2, 3, 4]
    only_start = {"run_ids": [a], "metric_key": "acc", "start_step": 2}
    _error(api.get(url, params=only_start), 400, "INVALID_PARAMETER_VALUE")
    _error(api.get(url, params={"metric_key": "acc"}), 400, "INVALID_PARAMETER_VALUE")


def test_log_batch_limits_and_params(api: httpx.Client) -> None:
    rid = _run(api, _experiment(api))["info"]["run_id"]
    url = MLFLOW + "/runs/log-batch"
    metric = {"key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    too_many = {"run_id": rid, "metrics": [metric] * 1001}
    assert "at most 1000 metrics" in _error(
        api.post(url, json=too_many), 400, "INVALID_PARAMETER_VALUE"
    )
    params = [{"key": f"p{i}", "value": "v"} for i in range(101)]
    _error(api.post(url, json={"run_id": rid, "params": params}), 400, "INVALID_PARAMETER_VALUE")
    tags = [{"key": f"t{i}", "value": "v"} for i in range(101)]
    _error(api.post(url, json={"run_id": rid, "tags": tags}), 400, "INVALID_PARAMETER_VALUE")
    total = {"run_id": rid, "metrics": [metric] * 950, "params": params[:60]}
    _error(api.post(url, json=total), 400, "INVALID_PARAMETER_VALUE")
    long_value = {"run_id": rid, "params": [{"key": "p", "value": "x" * 6001}]}
    _error(api.post(url, json=long_value), 400, "INVALID_PARAMETER_VALUE")
    long_key = {"run_id": rid, "key": "k" * 251, "value": "v"}
    _error(api.post(MLFLOW + "/runs/set-tag", json=long_key), 400, "INVALID_PARAMETER_VALUE")
    dup = {"run_id": rid, "params": [{"key": "d", "value": "1"}, {"key": "d", "value": "2"}]}
    _error(api.post(url, json=dup), 400, "INVALID_PARAMETER_VALUE")
    _error(
        api.post(url, json={"run_id": rid, "metrics": [{"key": "m"}]}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    malformed = api.post(url, content=b"{not json", headers={"content-type": "application/json"})
    _error(malformed, 400, "MALFORMED_REQUEST")

    # The largest batch MLflow allows goes through in one request.
    full = {
        "run_id": rid,
        "metrics": [
            {"key": f"m{i % 10}", "value": i, "timestamp": i, "step": i} for i in range(800)
        ],
        "params": [{"key": f"p{i}", "value": str(i)} for i in range(100)],
        "tags": [{"key": f"t{i}", "value": str(i)} for i in range(100)],
    }
    assert _ok(api.post(url, json=full)) == {}
    run = _ok(api.get(MLFLOW + "/runs/get", params={"run_id": rid}))["run"]
    assert len(run["data"]["params"]) == 100
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]}["m9"] == 799

    # Params are write-once: the same value again is fine, a new one is refused.
    same = {"run_id": rid, "key": "p1", "value": "1"}
    assert _ok(api.post(MLFLOW + "/runs/log-parameter", json=same)) == {}
    other = {"run_id": rid, "key": "p1", "value": "changed"}
    _error(api.post(MLFLOW + "/runs/log-parameter", json=other), 400, "INVALID_PARAMETER_VALUE")
    _error(api.post(url, json={"run_id": rid, "params": [other]}), 400, "INVALID_PARAMETER_VALUE")

    _ok(api.post(MLFLOW + "/runs/delete", json={"run_id": rid}))
    _error(
        api.post(MLFLOW + "/runs/set-tag", json={"run_id": rid, "key": "a", "value": "b"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )


def test_search_runs_filters_orders_and_pages(api: httpx.Client) -> None:
    eid = _experiment(api)
    rids = []
    for i in range(5):
        rid = _run(api, eid, run_name=f"r{i}")["info"]["run_id"]
        batch = {
            "run_id": rid,
            "metrics": [{"key": "acc", "value": i / 10, "timestamp": 1, "step": 0}],
            "params": [{"key": "depth", "value": str(i % 2)}],
        }
        _ok(api.post(MLFLOW + "/runs/log-batch", json=batch))
        rids.append(rid)
    _ok(api.post(MLFLOW + "/runs/delete", json={"run_id": rids[0]}))

    body = {
        "experiment_ids": [eid],
        "filter": "params.depth = '1' OR metrics.acc >= 0.4",
        "order_by": ["metrics.acc DESC"],
    }
    runs = _ok(api.post(MLFLOW + "/runs/search", json=body))["runs"]
    assert [r["info"]["run_name"] for r in runs] == ["r4", "r3", "r1"]

    pages, token = [], None
    while True:
        body = {"experiment_ids": [eid], "max_results": 2, "order_by": ["attributes.run_name"]}
        if token:
            body["page_token"] = token
        page = _ok(api.post(MLFLOW + "/runs/search", json=body))
        pages.append([r["info"]["run_name"] for r in page["runs"]])
        token = page.get("next_page_token")
        if not token:
            break
    assert pages == [["r1", "r2"], ["r3", "r4"]]

    for view, expected in (
        ("DELETED_ONLY", {"r0"}),
        ("ALL", {f"r{i}" for i in range(5)}),
        (2, {"r0"}),
    ):
        body = {"experiment_ids": [eid], "run_view_type": view}
        runs = _ok(api.post(MLFLOW + "/runs/search", json=body))["runs"]
        assert {r["info"]["run_name"] for r in runs} == expected

    too_many = {"experiment_ids": [eid], "max_results": 50001}
    _error(api.post(MLFLOW + "/runs/search", json=too_many), 400, "INVALID_PARAMETER_VALUE")
    bad_filter = {"experiment_ids": [eid], "filter": "metrics.acc >"}
    _error(api.post(MLFLOW + "/runs/search", json=bad_filter), 400, "INVALID_PARAMETER_VALUE")
    assert _ok(api.post(MLFLOW + "/runs/search", json={})) == {"runs": []}


def test_search_experiments_post_and_get(api: httpx.Client) -> None:
    stem = f"srch-{uuid.uuid4().hex[:8]}"
    for suffix, team in (("a", "risk"), ("b", "growth"), ("c", "risk")):
        body = {"name": f"{stem}-{suffix}", "tags": [{"key": "team", "value": team}]}
        _ok(api.post(MLFLOW + "/experiments/create", json=body))
    body = {"filter": f"name LIKE '{stem}-%' AND tags.team = 'risk'", "order_by": ["name DESC"]}
    found = _ok(api.post(MLFLOW + "/experiments/search", json=body))["experiments"]
    assert [e["name"] for e in found] == [f"{stem}-c", f"{stem}-a"]

    params = {"filter": f"name LIKE '{stem}-%'", "order_by": "name", "max_results": 2}
    page = _ok(api.get(MLFLOW + "/experiments/search", params=params))
    assert [e["name"] for e in page["experiments"]] == [f"{stem}-a", f"{stem}-b"]
    params["page_token"] = page["next_page_token"]
    page = _ok(api.get(MLFLOW + "/experiments/search", params=params))
    assert [e["name"] for e in page["experiments"]] == [f"{stem}-c"]
    assert "next_page_token" not in page

    bad = {"filter": "name > 'a'"}
    _error(api.post(MLFLOW + "/experiments/search", json=bad), 400, "INVALID_PARAMETER_VALUE")
    _error(
        api.post(MLFLOW + "/experiments/search", json={"max_results": 50001}),
        400,
        "INVALID_PARAMETER_VALUE",
    )


def test_inputs_outputs_and_legacy_log_model(api: httpx.Client) -> None:
    rid = _run(api, _experiment(api))["info"]["run_id"]
    dataset = {
        "name": "iris",
        "digest": "abc123",
        "source_type": "local",
        "source": '{"uri": "/data/iris.csv"}',
        "schema": "{}",
    }
    body = {
        "run_id": rid,
        "datasets": [
            {"tags": [{"key": "mlflow.data.context", "value": "training"}], "dataset": dataset}
        ],
        "models": [{"model_id": "m-in"}],
    }
    assert _ok(api.post(MLFLOW + "/runs/log-inputs", json=body)) == {}
    outputs = {"run_id": rid, "models": [{"model_id": "m-out", "step": 3}]}
    assert _ok(api.post(MLFLOW + "/runs/outputs", json=outputs)) == {}
    _error(api.post(MLFLOW + "/runs/outputs", json={"run_id": rid}), 400, "INVALID_PARAMETER_VALUE")

    model = {
        "artifact_path": "model",
        "flavors": {"sklearn": {}},
        "utc_time_created": "now",
        "run_id": rid,
    }
    for _ in range(2):
        body = {"run_id": rid, "model_json": json.dumps(model)}
        assert _ok(api.post(MLFLOW + "/runs/log-model", json=body)) == {}
    bad = {"run_id": rid, "model_json": '{"artifact_path": "m"}'}
    assert "mandatory" in _error(
        api.post(MLFLOW + "/runs/log-model", json=bad), 400, "INVALID_PARAMETER_VALUE"
    )

    run = _ok(api.get(MLFLOW + "/runs/get", params={"run_id": rid}))["run"]
    (ds,) = run["inputs"]["dataset_inputs"]
    assert ds["dataset"]["name"] == "iris" and ds["dataset"]["digest"] == "abc123"
    assert ds["dataset"]["source_type"] == "local"
    assert ds["tags"] == [{"key": "mlflow.data.context", "value": "training"}]
    assert run["inputs"]["model_inputs"] == [{"model_id": "m-in"}]
    assert run["outputs"]["model_outputs"] == [{"model_id": "m-out", "step": 3}]
    history = json.loads(_tags(run)["mlflow.log-model.history"])
    assert history == [model, model]

    # The same inputs through our own API.
    own = _ok(api.get(f"/api/v1/runs/{rid}"))
    assert {(i["kind"], i["name"], i["context"]) for i in own["inputs"]} >= {
        ("dataset", "iris", "training")
    }


def test_artifact_listing(api: httpx.Client) -> None:
    rid = _run(api, _experiment(api))["info"]["run_id"]
    for path, data in (
        ("model/MLmodel", b"flavors: {}"),
        ("model/model.pkl", b"12345"),
        ("notes.txt", b"hi"),
    ):
        assert api.put(f"/api/v1/runs/{rid}/artifacts/{path}", content=data).status_code == 200
    out = _ok(api.get(MLFLOW + "/artifacts/list", params={"run_id": rid}))
    assert out["root_uri"].startswith("mlflow-artifacts:/") and out["root_uri"].endswith(
        f"{rid}/artifacts"
    )
    assert out["files"] == [
        {"path": "model", "is_dir": True},
        {"path": "notes.txt", "is_dir": False, "file_size": 2},
    ]
    inner = _ok(api.get(MLFLOW + "/artifacts/list", params={"run_uuid": rid, "path": "model"}))
    assert inner["files"] == [
        {"path": "model/MLmodel", "is_dir": False, "file_size": 11},
        {"path": "model/model.pkl", "is_dir": False, "file_size": 5},
    ]
    _error(
        api.get(MLFLOW + "/artifacts/list", params={"run_id": rid, "path": "../x"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )


@pytest.mark.parametrize("prefix", [MLFLOW, AJAX])
def test_both_prefixes_serve_the_same_store(api: httpx.Client, prefix: str) -> None:
    eid = _experiment(api)
    rid = _ok(api.post(prefix + "/runs/create", json={"experiment_id": eid}))["run"]["info"][
        "run_id"
    ]
    other = AJAX if prefix == MLFLOW else MLFLOW
    assert (
        _ok(api.get(other + "/runs/get", params={"run_id": rid}))["run"]["info"]["experiment_id"]
        == eid
    )
