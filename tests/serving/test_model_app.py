"""The model server: body forms, predictions, errors, limits, health, bundles, a real socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from mlplane.errors import InvalidInput, TamperedArtifact
from mlplane.registry import integrity
from mlplane.serving import create_model_app, serve
from mlplane.serving.model_app import SPEC_ENV, _json

write_folder = pytest.importorskip(
    "mlplane.registry._build", reason="the registry's write_folder (flavors) is not importable"
).write_folder

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def trained() -> tuple[Any, pd.DataFrame]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    x = pd.DataFrame(iris.data, columns=COLUMNS)
    labels = np.asarray(iris.target_names)[iris.target]  # string classes
    model = LogisticRegression(max_iter=500).fit(x, labels)
    return model, x


@pytest.fixture(scope="module")
def folder(trained: tuple[Any, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, x = trained
    out = tmp_path_factory.mktemp("version") / "v"
    write_folder(model, out, x.head(5))
    return out


@pytest.fixture(scope="module")
def client(folder: Path) -> Iterator[TestClient]:
    with TestClient(create_model_app(folder, name="iris", version="3")) as c:
        yield c


@pytest.fixture
def rows(trained: tuple[Any, pd.DataFrame]) -> pd.DataFrame:
    return trained[1].iloc[[0, 60, 120, 149]].reset_index(drop=True)


def expected(trained: tuple[Any, pd.DataFrame], rows: pd.DataFrame) -> list[Any]:
    return list(trained[0].predict(rows))


# -- health and metadata -----------------------------------------------------------------------


def test_readyz_is_503_until_the_model_is_loaded(folder: Path) -> None:
    # Outside a ``with`` block TestClient does not run the lifespan: the model never loads.
    c = TestClient(create_model_app(folder, name="iris"))
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 503
    assert c.post("/predict", json={"instances": [{"a": 1}]}).status_code == 503


def test_health_and_metadata(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    meta = client.get("/v1/models/iris").json()
    assert (meta["name"], meta["version"], meta["flavor"]) == ("iris", "3", "sklearn")
    assert [c["name"] for c in meta["signature"]["inputs"]] == COLUMNS
    assert client.get("/v1/models/other").status_code == 404


# -- predictions -------------------------------------------------------------------------------


def test_instances(
    client: TestClient, trained: tuple[Any, pd.DataFrame], rows: pd.DataFrame
) -> None:
    r = client.post("/v1/models/iris:predict", json={"instances": rows.to_dict("records")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"predictions": expected(trained, rows)}


def test_inputs_columns(
    client: TestClient, trained: tuple[Any, pd.DataFrame], rows: pd.DataFrame
) -> None:
    r = client.post("/predict", json={"inputs": rows.to_dict("list")})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected(trained, rows)


def test_dataframe_split(
    client: TestClient, trained: tuple[Any, pd.DataFrame], rows: pd.DataFrame
) -> None:
    split = rows.to_dict("split")
    body = {"dataframe_split": {"columns": split["columns"], "data": split["data"]}}
    r = client.post("/v1/models/iris:predict", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected(trained, rows)


def test_rows_as_lists_take_the_signature_order(
    client: TestClient, trained: tuple[Any, pd.DataFrame], rows: pd.DataFrame
) -> None:
    r = client.post("/predict", json={"instances": rows.to_numpy().tolist()})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected(trained, rows)


def test_integers_are_cast_to_the_signature(client: TestClient) -> None:
    r = client.post("/predict", json={"instances": [dict.fromkeys(COLUMNS, 1)]})
    assert r.status_code == 200, r.text


def test_non_finite_and_numpy_values_are_json_safe() -> None:
    body = _json({"p": np.array([1.5, np.nan, np.inf]), "o": np.array(["a", None], dtype=object)})
    assert json.loads(body.body) == {"p": [1.5, None, None], "o": ["a", None]}


# -- bad input ---------------------------------------------------------------------------------


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    return body


def test_missing_column_is_400_naming_it(client: TestClient, rows: pd.DataFrame) -> None:
    records = rows.drop(columns=["petal_width"]).to_dict("records")
    body = problem(client.post("/predict", json={"instances": records}), 400)
    assert body["code"] == "INVALID_INPUT"
    assert "petal_width" in body["detail"]


def test_wrong_type_is_400_naming_the_column(client: TestClient, rows: pd.DataFrame) -> None:
    cols = rows.to_dict("list")
    cols["sepal_width"] = ["wide"] * len(rows)
    body = problem(client.post("/predict", json={"inputs": cols}), 400)
    assert body["column"] == "sepal_width"
    assert "sepal_width" in body["detail"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "exactly one of"),
        (b'{"rows": []}', "exactly one of"),
        (b'{"instances": [], "inputs": {}}', "exactly one of"),
        (b'{"instances": []}', "non-empty"),
        (b'{"instances": [{"a": 1}, 2]}', "mixes"),
        (b'{"inputs": {"a": [1, 2], "b": [1]}}', "malformed"),
        (b'{"dataframe_split": {"columns": ["a"]}}', "data"),
        (b'{"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}}', "malformed"),
    ],
)
def test_malformed_bodies_are_400(client: TestClient, content: bytes, needle: str) -> None:
    r = client.post("/predict", content=content, headers={"content-type": "application/json"})
    assert needle in problem(r, 400)["detail"]


def test_body_over_the_limit_is_413(folder: Path, rows: pd.DataFrame) -> None:
    app = create_model_app(folder, name="iris", max_body_bytes=200)
    body = json.dumps({"instances": rows.to_dict("records") * 10}).encode()
    with TestClient(app) as c:
        problem(c.post("/predict", content=body), 413)

        def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
            yield from (body[i : i + 64] for i in range(0, len(body), 64))

        problem(c.post("/predict", content=chunks()), 413)
        small = json.dumps({"instances": rows.head(1).to_dict("records")})
        assert c.post("/predict", content=small).status_code == 200


# -- bundles -----------------------------------------------------------------------------------


def manifest_for(folder: Path) -> dict[str, Any]:
    meta = json.loads((folder / "mlplane-model.json").read_text())
    files = integrity.list_files(folder)
    return {
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files],
        "manifest_sha256": integrity.manifest_digest(files, meta["flavor"], meta["info"]),
    }


@pytest.fixture(scope="module")
def bundle(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlplane.registry.package import package_version

    out = tmp_path_factory.mktemp("bundle") / "b"
    package_version(folder, out, name="iris", version=7, manifest=manifest_for(folder))
    return out


def test_a_bundle_serves_under_its_manifest_name(
    bundle: Path, trained: tuple[Any, pd.DataFrame], rows: pd.DataFrame
) -> None:
    with TestClient(create_model_app(bundle)) as c:
        meta = c.get("/v1/models/iris").json()
        assert meta["version"] == "7"
        assert (
            meta["manifest_sha256"]
            == json.loads((bundle / "manifest.json").read_text())["manifest_sha256"]
        )
        r = c.post("/v1/models/iris:predict", json={"instances": rows.to_dict("records")})
        assert r.json()["predictions"] == expected(trained, rows)


@pytest.mark.parametrize("change", ["modify", "add"])
def test_a_tampered_bundle_does_not_start(bundle: Path, tmp_path: Path, change: str) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    meta = copy / "model" / "mlplane-model.json"
    if change == "modify":
        meta.write_text(meta.read_text().replace("sklearn", "sklearn "))
    else:
        (copy / "model" / "model" / "extra.pkl").write_bytes(b"x")
    app = create_model_app(copy)
    with pytest.raises(TamperedArtifact), TestClient(app):
        pass
    with pytest.raises(TamperedArtifact):
        serve(copy)  # checked before uvicorn starts


def test_serve_refuses_remote_hosts_without_allow_remote(folder: Path) -> None:
    with pytest.raises(InvalidInput, match="loopback"):
        serve(folder, host="0.0.0.0")
    with pytest.raises(InvalidInput, match="not a model version folder"):
        serve(folder.parent / "nowhere")


# -- a real socket -----------------------------------------------------------------------------


def test_real_server_on_a_loopback_socket(
    bundle: Path, tmp_path: Path, trained: tuple[Any, pd.DataFrame], rows: pd.DataFrame
) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.set_inheritable(True)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = {**os.environ, SPEC_ENV: json.dumps({"folder": str(bundle)})}
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "mlplane.serving.model_app:app_factory",
                "--factory",
                "--fd",
                str(sock.fileno()),
                "--log-level",
                "warning",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )
    sock.close()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the model server did not become ready"
            time.sleep(0.1)
        r = httpx.post(url + "/v1/models/iris:predict", json={"instances": rows.to_dict("records")})
        assert r.status_code == 200
        assert r.json() == {"predictions": expected(trained, rows)}
        bad = httpx.post(url + "/predict", json={"inputs": {"sepal_length": [1.0]}})
        assert bad.status_code == 400 and "petal_width" in bad.json()["detail"]
    finally:
        proc.terminate()
        proc.wait(10)
