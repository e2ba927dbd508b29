"""The dataset routes through a real socket: uploads, statuses, problem+json, traversal."""

from __future__ import annotations

import base64
import io
import tarfile
import uuid
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.conftest import ServerProcess


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + "/api/v1", timeout=30) as c:
        yield c


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(obj)).decode()


def test_upload_read_and_download(http: httpx.Client) -> None:
    name = f"r-{uuid.uuid4().hex[:8]}"
    body = _tar({"t.csv": b"id,v\n1,a\n2,b\n", "docs/readme.txt": b"hello"})
    created = http.post(f"/datasets/{name}/versions", content=body)
    assert created.status_code == 201, created.text
    v = created.json()["version"]
    assert v["version"] == 1 and [f["path"] for f in v["files"]] == ["docs/readme.txt", "t.csv"]
    again = http.post(f"/datasets/{name}/versions", content=body)
    assert again.status_code == 200 and again.json()["created"] is False
    got = http.get(f"/datasets/{name}@1/files/docs/readme.txt")
    assert got.status_code == 200 and got.content == b"hello"
    assert http.get(f"/datasets/{name}@latest").json()["digest"] == v["digest"]
    assert http.get("/datasets").status_code == 200


def test_quality_gate_is_422_with_the_report(http: httpx.Client) -> None:
    name = f"g-{uuid.uuid4().hex[:8]}"
    contract = {"columns": {"v": {"in_set": ["a"]}}}
    resp = http.post(
        f"/datasets/{name}/versions",
        content=_tar({"t.csv": b"id,v\n1,a\n2,b\n"}),
        headers={"Mlplane-Contract": _b64(contract)},
    )
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["code"] == "QUALITY_GATE_FAILED" and "in_set" in problem["detail"]
    assert http.get(f"/datasets/{name}").status_code == 404


@pytest.mark.parametrize(
    ("files", "headers", "status"),
    [
        ({"../escape.txt": b"x"}, {}, 400),  # traversal refused by the tar data filter
        ({"/abs.txt": b"x"}, {}, 201),  # the data filter strips the leading slash: inside
        ({"t.csv": b"a\n1\n"}, {"Mlplane-Pii": "not-base64-json"}, 400),
        ({"t.csv": b"a\n1\n"}, {"Mlplane-Pii": _b64("scramble")}, 400),
        ({"t.csv": b"a\n1\n"}, {"Mlplane-Contract": _b64({"columns": {"zz": {"unique": 1}}})}, 400),
    ],
)
def test_bad_uploads_are_4xx(
    http: httpx.Client, files: dict[str, bytes], headers: dict[str, str], status: int
) -> None:
    resp = http.post(
        f"/datasets/bad-{uuid.uuid4().hex[:8]}/versions", content=_tar(files), headers=headers
    )
    assert resp.status_code == status, resp.text


def test_not_a_tar_and_unknown_things(http: httpx.Client) -> None:
    assert http.post("/datasets/x/versions", content=b"not a tar").status_code == 400
    missing = http.get("/datasets/nothing-here@3")
    assert missing.status_code == 404 and "nothing-here" in missing.json()["detail"]
    assert http.post("/gc", json={"grace_s": -1}).status_code == 422
    assert http.post("/datasets/x@1/samples", json={"fraction": 2}).status_code == 422
