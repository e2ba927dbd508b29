"""The three protocols over a real server: answers equal the model's, OIP metadata and
Triton's binary tensors, and wrong payloads refused as 4xx naming the field, never 500."""

from __future__ import annotations

import json

import httpx
import numpy as np

from tests.serving.inference.conftest import COLUMNS, Running, Store, split


def _tensor(x: np.ndarray, name: str = "input-0", dt: str = "FP64") -> dict[str, object]:
    # What tritonclient's InferInput sends with binary_data=False: shape and flat data.
    return {"name": name, "shape": list(x.shape), "datatype": dt, "data": x.ravel().tolist()}


def test_oip_metadata_ready_and_server(store: Store, running: Running, http: httpx.Client) -> None:
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").status_code == 200
    server = http.get("/v2").json()
    assert server["name"] == "mlplane" and "binary_tensor_data" in server["extensions"]
    meta = http.get("/v2/models/main").json()
    assert meta["name"] == "main" and meta["versions"] == ["1"] and meta["platform"] == "sklearn"
    assert [i["name"] for i in meta["inputs"]] == COLUMNS
    assert {i["datatype"] for i in meta["inputs"]} == {"FP64"}
    assert meta["outputs"] == [{"name": "y", "datatype": "INT64", "shape": [-1]}]
    assert http.get("/v2/models/main/versions/1").json()["inputs"] == meta["inputs"]
    assert http.get("/v2/models/main/ready").json()["ready"] is True
    assert http.get("/v2/models/main/versions/1/ready").status_code == 200
    assert http.get("/v2/models/main/versions/7/ready").status_code == 404
    assert http.get("/v2/models/nope").status_code == 404


def test_oip_infer_with_one_2d_input_or_one_input_per_column(
    store: Store, http: httpx.Client
) -> None:
    x = store.x[:7]
    want = store.models[1].predict(x).tolist()
    one = http.post("/v2/models/main/infer", json={"id": "abc", "inputs": [_tensor(x.to_numpy())]})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["model_name"] == "main" and body["model_version"] == "1" and body["id"] == "abc"
    assert body["outputs"] == [{"name": "y", "shape": [7], "datatype": "INT64", "data": want}]
    assert one.headers["x-mlplane-version"] == "1"
    per_column = {"inputs": [_tensor(x[c].to_numpy(), c) for c in COLUMNS]}
    assert http.post("/v2/models/main/infer", json=per_column).json()["outputs"][0]["data"] == want
    column_2d = {"inputs": [_tensor(x[[c]].to_numpy(), c, "FP32") for c in COLUMNS]}
    got = http.post("/v2/models/main/versions/1/infer", json=column_2d)
    assert got.status_code == 200, got.text
    assert http.post("/v2/models/main/versions/2/infer", json=per_column).status_code == 404


def test_oip_binary_tensors_as_tritonclient_sends_them(store: Store, http: httpx.Client) -> None:
    # tritonclient's defaults: the input as raw little-endian bytes after the JSON header,
    # and no outputs named, so "binary_data_output" asks for every output in binary.
    x = store.x[:5].to_numpy()
    raw = x.astype("<f8").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [5, 20],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    r = http.post(
        "/v2/models/main/infer",
        content=head + raw,
        headers={
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    answer = json.loads(r.content[:n])
    out = answer["outputs"][0]
    size = out["parameters"]["binary_data_size"]
    assert out["datatype"] == "INT64" and out["shape"] == [5] and "data" not in out
    got = np.frombuffer(r.content[n : n + size], dtype="<i8")
    assert got.tolist() == store.models[1].predict(store.x[:5]).tolist()
    # An output asked for in JSON by name, as InferRequestedOutput(binary_data=False) does.
    head2 = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [5, 20],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
        }
    ).encode()
    r2 = http.post(
        "/v2/models/main/infer",
        content=head2 + raw,
        headers={"Inference-Header-Content-Length": str(len(head2))},
    )
    assert r2.status_code == 200 and r2.json()["outputs"][0]["data"] == got.tolist()
    unknown = json.loads(head2)
    unknown["outputs"] = [{"name": "nope"}]
    bad = json.dumps(unknown).encode()
    r3 = http.post(
        "/v2/models/main/infer",
        content=bad + raw,
        headers={"Inference-Header-Content-Length": str(len(bad))},
    )
    assert r3.status_code == 400 and "nope" in r3.json()["error"]


def test_invocations_takes_the_four_mlflow_bodies(store: Store, http: httpx.Client) -> None:
    x = store.x[10:14]
    want = store.models[1].predict(x).tolist()
    forms = [
        split(x),
        {"dataframe_records": x.to_dict(orient="records")},
        {"instances": x.to_dict(orient="records")},
        {"instances": x.to_numpy().tolist()},
        {"inputs": {c: x[c].tolist() for c in COLUMNS}},
        {"inputs": x.to_numpy().tolist()},
        {
            "dataframe_split": {
                "columns": COLUMNS[::-1],
                "data": x[COLUMNS[::-1]].to_numpy().tolist(),
            }
        },
    ]
    for form in forms:
        r = http.post("/invocations", json=form, headers={"X-Mlplane-Deployment": "main"})
        assert r.status_code == 200, (list(form), r.text)
        assert r.json() == {"predictions": want}
    one = {"inputs": {c: float(x[c].iloc[0]) for c in COLUMNS}}  # one row of scalars
    r = http.post("/invocations", json=one, headers={"X-Mlplane-Deployment": "main"})
    assert r.json() == {"predictions": want[:1]}


def test_invocations_needs_a_deployment_when_several_are_served(http: httpx.Client) -> None:
    r = http.post("/invocations", json={"instances": [[0.0] * 20]})
    if r.status_code != 200:  # other tests' deployments are served too
        assert r.status_code == 404 and "X-Mlplane-Deployment" in r.json()["detail"]


def test_plain_predict_carries_the_request_id_and_version(store: Store, http: httpx.Client) -> None:
    x = store.x[:3]
    r = http.post("/api/v1/deployments/main/predict", json=split(x))
    body = r.json()
    assert body["predictions"] == store.models[1].predict(x).tolist() and body["version"] == 1
    assert r.headers["x-request-id"] == body["request_id"]
    assert body["request_id"].startswith("r1-") and len(body["request_id"].split("-")[1]) == 16
    mine = http.post(
        "/api/v1/deployments/main/predict", json=split(x), headers={"X-Request-Id": "caller-42"}
    )
    assert mine.headers["x-request-id"] == "caller-42" == mine.json()["request_id"]


def test_wrong_payloads_are_4xx_naming_the_field(store: Store, http: httpx.Client) -> None:
    x = store.x[:3]
    records = x.to_dict(orient="records")
    stringy = [dict(records[0], f5="high")]
    infer = [
        ({"inputs": [_tensor(x.to_numpy()[:, :19])]}, "[rows, 20]"),
        ({"inputs": [{**_tensor(x.to_numpy()), "data": [1.0, 2.0]}]}, "shape"),
        ({"inputs": [_tensor(x[c].to_numpy(), c) for c in COLUMNS[:-1]]}, "f19"),
        (
            {
                "inputs": [
                    {"name": "f0", "shape": [1], "datatype": "BYTES", "data": ["x"]},
                    *[_tensor(x[c].to_numpy()[:1], c) for c in COLUMNS[1:]],
                ]
            },
            "f0",
        ),
        ({"inputs": [{**_tensor(x.to_numpy()), "datatype": "FP128"}]}, "datatype"),
        ({"inputs": [{**_tensor(x.to_numpy()), "data": ["a"] * 60}]}, "input-0"),
        ({"nothing": 1}, "inputs"),
    ]
    for body, needle in infer:
        r = http.post("/v2/models/main/infer", json=body)
        assert r.status_code == 400, (body, r.text)
        assert needle in r.json()["error"], r.text
    invocations = [
        (
            {"dataframe_split": {"columns": COLUMNS[:-1], "data": x.to_numpy()[:, :-1].tolist()}},
            "f19",
        ),
        ({"dataframe_records": stringy}, "f5"),
        ({"instances": [[1.0] * 19]}, "20 values"),
        ({"instances": [[1.0] * 20], "inputs": [[1.0] * 20]}, "exactly one"),
        ({"dataframe_records": [{"f0": 1}]}, "f1"),
    ]
    for body, needle in invocations:
        r = http.post("/api/v1/deployments/main/predict", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert needle in r.json()["detail"], r.text
    assert http.post("/api/v1/deployments/main/predict", content=b"{nope").status_code == 400
    huge = b'{"instances": [[' + b"1.0," * (5 * 1024 * 1024) + b"1]]}"  # > 16 MiB
    assert http.post("/api/v1/deployments/main/predict", content=huge).status_code == 413
    assert http.post("/api/v1/deployments/nope/predict", json=split(x)).status_code == 404
    assert http.get("/v2/models/main/infer").status_code == 405
