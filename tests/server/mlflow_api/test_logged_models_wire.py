"""Logged models on the wire: MLflow's JSON bodies, status enum, error codes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

MLFLOW = "/api/2.0/mlflow"
LM = MLFLOW + "/logged-models"
ART = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture
def eid(api: httpx.Client, unique: str) -> str:
    resp = api.post(MLFLOW + "/experiments/create", json={"name": f"lm-wire-{unique}"})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["experiment_id"])


def _create(api: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = api.post(LM, json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()["model"]  # type: ignore[no-any-return]


def test_create_get_finalize_delete(api: httpx.Client, eid: str) -> None:
    model = _create(
        api,
        experiment_id=eid,
        name="clf",
        model_type="sklearn",
        params=[{"key": "alpha", "value": "0.1"}],
        tags=[{"key": "team", "value": "risk"}],
    )
    info = model["info"]
    mid = info["model_id"]
    assert mid.startswith("m-") and len(mid) == 34
    assert info["status"] == "LOGGED_MODEL_PENDING" and info["experiment_id"] == eid
    assert info["artifact_uri"] == f"mlflow-artifacts:/{eid}/models/{mid}/artifacts"
    assert info["creation_timestamp_ms"] == info["last_updated_timestamp_ms"] > 0
    assert model["data"]["params"] == [{"key": "alpha", "value": "0.1"}]
    assert info["tags"] == [{"key": "team", "value": "risk"}]

    assert (
        api.post(f"{LM}/{mid}/params", json={"params": [{"key": "beta", "value": "2"}]}).status_code
        == 200
    )
    clash = api.post(f"{LM}/{mid}/params", json={"params": [{"key": "alpha", "value": "9"}]})
    assert clash.status_code == 400 and "write-once" in clash.json()["message"]

    done = api.patch(f"{LM}/{mid}", json={"model_id": mid, "status": "LOGGED_MODEL_READY"})
    assert (
        done.status_code == 200 and done.json()["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    )
    pending = api.patch(f"{LM}/{mid}", json={"model_id": mid, "status": 1})
    assert pending.status_code == 400 and pending.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    got = api.get(f"{LM}/{mid}").json()["model"]
    assert {p["key"]: p["value"] for p in got["data"]["params"]} == {"alpha": "0.1", "beta": "2"}

    assert api.request("DELETE", f"{LM}/{mid}", json={"model_id": mid}).status_code == 200
    gone = api.get(f"{LM}/{mid}")
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    kept = api.get(f"{LM}/{mid}", params={"allow_deleted": "true"})
    assert kept.status_code == 200 and kept.json()["model"]["info"]["model_id"] == mid


def test_errors(api: httpx.Client, eid: str) -> None:
    missing = api.get(f"{LM}/m-{'0' * 32}")
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    malformed = api.get(f"{LM}/not-a-model")
    assert malformed.status_code == 400
    no_exp = api.post(LM, json={"experiment_id": "987654", "name": "x"})
    assert no_exp.status_code == 404
    mid = _create(api, experiment_id=eid, name="t")["info"]["model_id"]
    no_tag = api.delete(f"{LM}/{mid}/tags/absent")
    assert no_tag.status_code == 404
    bad_filter = api.post(LM + "/search", json={"experiment_ids": [eid], "filter": "colour = 'x'"})
    assert bad_filter.status_code == 400 and "unknown attribute" in bad_filter.json()["message"]
    unquoted = api.post(LM + "/search", json={"experiment_ids": [eid], "filter": "name = x"})
    assert unquoted.status_code == 400


def test_search_filters_and_orders(api: httpx.Client, eid: str) -> None:
    a = _create(api, experiment_id=eid, name="alpha-1", tags=[{"key": "k", "value": "x"}])
    b = _create(api, experiment_id=eid, name="beta", model_type="agent")
    api.patch(f"{LM}/{b['info']['model_id']}", json={"status": "LOGGED_MODEL_READY"})

    def ids(**body: Any) -> list[str]:
        resp = api.post(LM + "/search", json={"experiment_ids": [eid], **body})
        assert resp.status_code == 200, resp.text
        return [m["info"]["name"] for m in resp.json().get("models", [])]

    newest_first = api.post(LM + "/search", json={"experiment_ids": [eid]}).json()["models"]
    stamps = [m["info"]["creation_timestamp_ms"] for m in newest_first]
    assert len(stamps) == 2 and stamps == sorted(stamps, reverse=True)
    assert ids(filter="name LIKE 'alpha%'") == ["alpha-1"]
    assert ids(filter="tags.k = 'x'") == ["alpha-1"]
    assert ids(filter="model_type = 'agent' AND status = 'READY'") == ["beta"]
    assert ids(filter="name IN ('beta', 'gamma')") == ["beta"]
    since = a["info"]["creation_timestamp_ms"]
    assert sorted(ids(filter=f"creation_timestamp >= {since}")) == ["alpha-1", "beta"]
    assert ids(filter=f"creation_timestamp < {since}") == []
    assert ids(order_by=[{"field_name": "name", "ascending": True}]) == ["alpha-1", "beta"]


def test_model_files_through_both_apis(api: httpx.Client, eid: str) -> None:
    mid = _create(api, experiment_id=eid, name="files")["info"]["model_id"]
    root = f"{eid}/models/{mid}/artifacts"
    assert api.put(f"{ART}/{root}/MLmodel", content=b"flavors: {}").status_code == 200
    assert api.put(f"{ART}/{root}/data/model.pkl", content=b"\x80\x04N.").status_code == 200

    listed = api.get(f"{LM}/{mid}/artifacts/directories").json()
    assert listed["root_uri"] == f"mlflow-artifacts:/{root}"
    assert listed["files"] == [
        {"path": "MLmodel", "is_dir": False, "file_size": 11},
        {"path": "data", "is_dir": True},
    ]
    sub = api.get(f"{LM}/{mid}/artifacts/directories", params={"artifact_directory_path": "data"})
    assert sub.json()["files"] == [{"path": "data/model.pkl", "is_dir": False, "file_size": 4}]
    got = api.get(f"{LM}/{mid}/artifacts/files", params={"artifact_file_path": "data/model.pkl"})
    assert got.status_code == 200 and got.content == b"\x80\x04N."
    escape = api.get(f"{LM}/{mid}/artifacts/files", params={"artifact_file_path": "../x"})
    assert escape.status_code == 400

    # The model's folder in MLflow's tree, and a model under the wrong experiment.
    assert api.get(ART, params={"path": f"{eid}/models/{mid}"}).json()["files"] == [
        {"path": "artifacts", "is_dir": True}
    ]
    wrong = api.get(f"{ART}/{int(eid) + 1000}/models/{mid}/artifacts/MLmodel")
    assert wrong.status_code == 404
