"""The proxied artifact store on the wire: raw HTTP against a real server, and the same
files seen through mlplane's own SDK."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlplane import Client

ART = "/api/2.0/mlflow-artifacts"


@pytest.fixture
def sdk(server: Any) -> Iterator[Client]:
    c = Client(uri=server.url)
    yield c
    c.close()


@pytest.fixture
def run_root(sdk: Client, unique: str) -> tuple[str, str, str]:
    """(experiment id, run id, the run's root in MLflow's artifact tree)."""
    eid = sdk.create_experiment(f"mlflow-art-{unique}")
    run_id = sdk.create_run(eid).info.run_id
    return eid, run_id, f"{eid}/{run_id}/artifacts"


def _names(api: httpx.Client, path: str) -> dict[str, Any]:
    resp = api.get(ART + "/artifacts", params={"path": path})
    assert resp.status_code == 200, resp.text
    return {f["path"]: f for f in resp.json().get("files", [])}


def test_upload_list_download_delete(api: httpx.Client, run_root: tuple[str, str, str]) -> None:
    _, _, root = run_root
    assert api.put(f"{ART}/artifacts/{root}/a.txt", content=b"hello").status_code == 200
    assert api.put(f"{ART}/artifacts/{root}/sub/b.json", content=b'{"x": 1}').status_code == 200

    files = _names(api, root)
    assert files["a.txt"] == {"path": "a.txt", "is_dir": False, "file_size": 5}
    assert files["sub"] == {"path": "sub", "is_dir": True}
    assert _names(api, f"{root}/sub") == {
        "b.json": {"path": "b.json", "is_dir": False, "file_size": 8}
    }
    # The folders above a run's artifacts lead down to them, as in MLflow's tree.
    assert _names(api, root.rsplit("/", 1)[0]) == {
        "artifacts": {"path": "artifacts", "is_dir": True}
    }

    got = api.get(f"{ART}/artifacts/{root}/sub/b.json")
    assert got.status_code == 200 and got.content == b'{"x": 1}'
    assert got.headers["content-type"].startswith("application/json")

    assert api.delete(f"{ART}/artifacts/{root}/sub").status_code == 200
    assert set(_names(api, root)) == {"a.txt"}
    missing = api.get(f"{ART}/artifacts/{root}/sub/b.json")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def _raw(server: Any, method: str, target: str, body: bytes | None = None) -> tuple[int, Any]:
    """A request sent byte for byte: httpx would remove the dot segments before sending."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, target, body=body)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


@pytest.mark.parametrize(
    "tail",
    [
        "/artifacts/../../../etc/passwd",
        "/artifacts/x/%2e%2e/%2e%2e/%2e%2e/y",
        "/artifacts/..%2F..%2Fescape",
        "/artifacts/nul%00.txt",
    ],
)
def test_traversal_and_nul_are_refused(
    server: Any, run_root: tuple[str, str, str], tail: str
) -> None:
    eid, run_id, _ = run_root
    target = f"{ART}/artifacts/{eid}/{run_id}{tail}"
    for method, body in (("PUT", b"x"), ("GET", None), ("DELETE", None)):
        status, payload = _raw(server, method, target, body)
        assert status == 400, (method, payload)
        assert payload["error_code"] == "INVALID_PARAMETER_VALUE"
    listed = _raw(server, "GET", f"{ART}/artifacts?path={eid}/{run_id}{tail}")
    assert listed[0] == 400 and listed[1]["error_code"] == "INVALID_PARAMETER_VALUE"


def test_absolute_paths_are_refused(api: httpx.Client) -> None:
    for path in ("/etc/passwd", "C:/windows", "\\\\host\\share"):
        resp = api.get(ART + "/artifacts", params={"path": path})
        assert resp.status_code == 400, path
        assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    put = api.put(f"{ART}/artifacts/%2Fetc/passwd", content=b"x")
    assert put.status_code == 400 and put.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_paths_outside_a_run_or_model_are_refused(
    api: httpx.Client, run_root: tuple[str, str, str], sdk: Client, unique: str
) -> None:
    eid, run_id, _ = run_root
    resp = api.put(f"{ART}/artifacts/{eid}/{run_id}/elsewhere.txt", content=b"x")
    assert resp.status_code == 400 and "names no file" in resp.json()["message"]
    # A run id under another experiment's folder is not found there.
    other = sdk.create_experiment(f"mlflow-art-other-{unique}")
    moved = api.put(f"{ART}/artifacts/{other}/{run_id}/artifacts/x.txt", content=b"x")
    assert moved.status_code == 404
    listed = api.get(ART + "/artifacts", params={"path": f"{other}/{run_id}/artifacts"})
    assert listed.status_code == 404


def test_large_file_streams_both_ways(
    api: httpx.Client, run_root: tuple[str, str, str], tmp_path: Path
) -> None:
    _, _, root = run_root
    size = 12 * 1024 * 1024 + 123
    src = tmp_path / "big.bin"
    with open(src, "wb") as fh:
        for _ in range(size // (1024 * 1024)):
            fh.write(os.urandom(1024 * 1024))
        fh.write(os.urandom(size % (1024 * 1024)))
    want = hashlib.sha256(src.read_bytes()).hexdigest()

    def body() -> Iterator[bytes]:  # a generator: httpx sends it chunked, never whole
        with open(src, "rb") as fh:
            while chunk := fh.read(256 * 1024):
                yield chunk

    assert api.put(f"{ART}/artifacts/{root}/big.bin", content=body()).status_code == 200
    assert _names(api, root)["big.bin"]["file_size"] == size

    digest, received, chunks = hashlib.sha256(), 0, 0
    with api.stream("GET", f"{ART}/artifacts/{root}/big.bin") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-length"] == str(size)
        for chunk in resp.iter_raw():
            digest.update(chunk)
            received += len(chunk)
            chunks += 1
    assert received == size and digest.hexdigest() == want
    assert chunks > 1


def test_multipart_round_trip(api: httpx.Client, run_root: tuple[str, str, str]) -> None:
    _, _, root = run_root
    parts = [os.urandom(300_000), os.urandom(300_000), b"tail"]
    created = api.post(
        f"{ART}/mpu/create/{root}/models",
        json={"path": "/home/me/data/weights.bin", "num_parts": 3},
    )
    assert created.status_code == 200, created.text
    upload_id = created.json()["upload_id"]
    creds = created.json()["credentials"]
    assert [c["part_number"] for c in creds] == [1, 2, 3]

    etags = []
    for cred, data in zip(reversed(creds), reversed(parts), strict=True):  # any order
        put = httpx.put(cred["url"], content=data, headers=cred["headers"])
        assert put.status_code == 200, put.text
        etags.append({"part_number": cred["part_number"], "etag": put.headers["ETag"]})

    bad = api.post(
        f"{ART}/mpu/complete/{root}/models",
        json={
            "path": "weights.bin",
            "upload_id": upload_id,
            "parts": [{"part_number": 1, "etag": '"b3:' + "0" * 64 + '"'}],
        },
    )
    assert bad.status_code == 400 and "ETag" in bad.json()["message"]

    done = api.post(
        f"{ART}/mpu/complete/{root}/models",
        json={"path": "weights.bin", "upload_id": upload_id, "parts": etags},
    )
    assert done.status_code == 200, done.text
    got = api.get(f"{ART}/artifacts/{root}/models/weights.bin")
    assert got.content == b"".join(parts)

    # Finished: the upload id is gone, so its part URLs no longer take data.
    again = httpx.put(creds[0]["url"], content=b"late")
    assert again.status_code == 404


def test_multipart_abort(api: httpx.Client, run_root: tuple[str, str, str]) -> None:
    _, _, root = run_root
    created = api.post(f"{ART}/mpu/create/{root}", json={"path": "x.bin", "num_parts": 2}).json()
    url = created["credentials"][0]["url"]
    assert httpx.put(url, content=b"part one").status_code == 200
    out_of_range = httpx.put(url.rsplit("/", 1)[0] + "/3", content=b"x")
    assert out_of_range.status_code == 400
    aborted = api.post(
        f"{ART}/mpu/abort/{root}", json={"path": "x.bin", "upload_id": created["upload_id"]}
    )
    assert aborted.status_code == 200
    assert httpx.put(url, content=b"late").status_code == 404
    assert "x.bin" not in _names(api, root)


def test_mlflow_upload_is_visible_to_the_sdk_and_the_reverse(
    api: httpx.Client, run_root: tuple[str, str, str], sdk: Client, tmp_path: Path
) -> None:
    _, run_id, root = run_root
    assert (
        api.put(f"{ART}/artifacts/{root}/from-mlflow/m.txt", content=b"via mlflow").status_code
        == 200
    )
    assert [a.path for a in sdk.list_artifacts(run_id, recursive=True)] == ["from-mlflow/m.txt"]
    assert sdk.read_artifact(run_id, "from-mlflow/m.txt") == b"via mlflow"

    local = tmp_path / "s.txt"
    local.write_bytes(b"via sdk")
    sdk.log_artifact(run_id, local, "from-sdk")
    assert _names(api, f"{root}/from-sdk")["s.txt"]["file_size"] == 7
    assert api.get(f"{ART}/artifacts/{root}/from-sdk/s.txt").content == b"via sdk"
