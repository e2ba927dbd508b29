"""MLflow's registry API on the wire (raw HTTP against a real server): bodies, error codes,
versions as strings, aliases, stages, searches and paging, rename, sources and downloads.

Versions are registered from run artifacts logged with mlplane's own SDK, so these tests
need no other part of the MLflow API."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import mlplane
from mlplane import fluent
from tests.registry import _payloads
from tests.server.mlflow_api.conftest import MLFLOW

# -- helpers shared with the stock-client tests ----------------------------------------------


MISSING, INVALID = "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"


def model_name(label: str = "m") -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def mlflow_model_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A folder written by ``mlflow.sklearn.save_model`` (skops, MLflow's default), and
    the rows to predict on."""
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] > 0).astype(int)
    folder = tmp_path_factory.mktemp("mlflow-model") / "model"
    model = LogisticRegression().fit(x, y)
    mlflow.sklearn.save_model(model, str(folder), pip_requirements=["scikit-learn"])
    return folder, x


def log_run(server: Any, folder: Path, *, auc: float = 0.95, path: str = "model") -> str:
    """A run (logged with mlplane's SDK) holding ``folder`` under ``path``; returns its id."""
    fluent.set_tracking_uri(server.url)
    with mlplane.start_run() as run:
        mlplane.log_metric("auc", auc)
        mlplane.log_artifacts(folder, path)
    return run.info.run_id


def call(api: httpx.Client, method: str, endpoint: str, body: dict[str, Any]) -> httpx.Response:
    if method == "GET":
        return api.get(MLFLOW + endpoint, params=body)
    return api.request(method, MLFLOW + endpoint, json=body)


def good(api: httpx.Client, method: str, endpoint: str, body: dict[str, Any]) -> Any:
    r = call(api, method, endpoint, body)
    assert r.status_code == 200, r.text
    return r.json()


def bad(api: httpx.Client, method: str, endpoint: str, body: dict[str, Any], code: str) -> str:
    r = call(api, method, endpoint, body)
    assert r.json()["error_code"] == code, r.text
    assert r.status_code == {"RESOURCE_DOES_NOT_EXIST": 404, "PERMISSION_DENIED": 403}.get(
        code, 400
    )
    return str(r.json()["message"])


def new_version(api: httpx.Client, name: str, run_id: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id, **extra}
    return good(api, "POST", "/model-versions/create", body)["model_version"]  # type: ignore[no-any-return]


# -- registered models -----------------------------------------------------------------------


def test_registered_model_lifecycle_and_errors(api: httpx.Client) -> None:
    name = model_name()
    body = {"name": name, "description": "fraud", "tags": [{"key": "team", "value": "risk"}]}
    rm = good(api, "POST", "/registered-models/create", body)["registered_model"]
    assert rm["name"] == name and rm["description"] == "fraud"
    assert rm["tags"] == [{"key": "team", "value": "risk"}]
    assert isinstance(rm["creation_timestamp"], int) and rm["creation_timestamp"] > 1e12
    msg = bad(api, "POST", "/registered-models/create", {"name": name}, "RESOURCE_ALREADY_EXISTS")
    assert name in msg
    bad(api, "GET", "/registered-models/get", {"name": name + "x"}, MISSING)
    bad(api, "POST", "/registered-models/create", {"name": "no spaces"}, INVALID)
    bad(api, "POST", "/registered-models/create", {}, INVALID)

    good(api, "PATCH", "/registered-models/update", {"name": name, "description": "v2"})
    good(api, "POST", "/registered-models/set-tag", {"name": name, "key": "k", "value": "v"})
    good(api, "DELETE", "/registered-models/delete-tag", {"name": name, "key": "team"})
    got = good(api, "GET", "/registered-models/get", {"name": name})["registered_model"]
    assert got["description"] == "v2" and got["tags"] == [{"key": "k", "value": "v"}]
    bad(
        api,
        "DELETE",
        "/registered-models/delete-tag",
        {"name": name, "key": "nope"},
        MISSING,
    )

    other = model_name()
    good(api, "POST", "/registered-models/create", {"name": other})
    rename = {"name": name, "new_name": other}
    bad(api, "POST", "/registered-models/rename", rename, "RESOURCE_ALREADY_EXISTS")
    renamed = name + "-renamed"
    out = good(api, "POST", "/registered-models/rename", {"name": name, "new_name": renamed})
    assert out["registered_model"]["name"] == renamed
    assert out["registered_model"]["description"] == "v2"
    bad(api, "GET", "/registered-models/get", {"name": name}, MISSING)

    for n in (renamed, other):
        good(api, "DELETE", "/registered-models/delete", {"name": n})
    bad(api, "GET", "/registered-models/get", {"name": renamed}, MISSING)
    bad(api, "DELETE", "/registered-models/delete", {"name": renamed}, MISSING)


def test_search_registered_models_filters_orders_and_pages(api: httpx.Client) -> None:
    prefix = model_name("search")
    names = [f"{prefix}-{i}" for i in range(5)]
    for i, n in enumerate(names):
        tags = [{"key": "parity", "value": "even" if i % 2 == 0 else "odd"}]
        good(api, "POST", "/registered-models/create", {"name": n, "tags": tags})

    def search(**params: Any) -> dict[str, Any]:
        return good(api, "GET", "/registered-models/search", params)  # type: ignore[no-any-return]

    like = f"name LIKE '{prefix}%'"
    assert [m["name"] for m in search(filter=like)["registered_models"]] == names
    first = search(filter=like, max_results=2, order_by=["name DESC"])
    assert [m["name"] for m in first["registered_models"]] == names[:2:-1][:2]
    seen = [m["name"] for m in first["registered_models"]]
    token = first["next_page_token"]
    while token:
        page = search(filter=like, max_results=2, order_by=["name DESC"], page_token=token)
        seen += [m["name"] for m in page["registered_models"]]
        token = page.get("next_page_token")
    assert seen == names[::-1]

    upper = f"name ILIKE '{prefix.upper()}-_'"
    assert len(search(filter=upper)["registered_models"]) == 5
    assert search(filter=f"name LIKE '{prefix.upper()}%'") == {"registered_models": []}
    even = search(filter=f"{like} AND tags.parity = 'even'")["registered_models"]
    assert [m["name"] for m in even] == names[::2]
    # What every stock client adds to its searches: a missing tag differs from any value.
    prompts = f"{like} AND tag.`mlflow.prompt.is_prompt` != 'true'"
    assert [m["name"] for m in search(filter=prompts)["registered_models"]] == names
    assert search(filter=f"{like} AND tags.missing LIKE '%'") == {"registered_models": []}
    exact = search(filter=f'name = "{names[3]}"')["registered_models"]
    assert [m["name"] for m in exact] == [names[3]]
    newest = search(filter=like, order_by=["creation_timestamp DESC"], max_results=1)
    assert newest["registered_models"][0]["name"] == names[-1]

    for params in (
        {"filter": "owner = 'x'"},
        {"filter": "name LIKE"},
        {"filter": f"{like} OR name = 'a'"},
        {"order_by": ["size DESC"]},
        {"max_results": 0},
        {"page_token": "not-a-token"},
    ):
        bad(api, "GET", "/registered-models/search", params, INVALID)


# -- model versions --------------------------------------------------------------------------


def test_versions_are_strings_with_sources_and_numbers_are_never_reused(
    api: httpx.Client, server: Any, mlflow_model_dir: tuple[Path, Any]
) -> None:
    name = model_name()
    run_id = log_run(server, mlflow_model_dir[0])
    missing = {"name": name, "source": f"runs:/{run_id}/model"}
    bad(api, "POST", "/model-versions/create", missing, MISSING)
    good(api, "POST", "/registered-models/create", {"name": name})
    tags = [{"key": "stage", "value": "dev"}]
    v1 = new_version(api, name, run_id, description="first", tags=tags)
    assert v1["version"] == "1" and v1["status"] == "READY" and v1["current_stage"] == "None"
    assert v1["source"] == f"runs:/{run_id}/model" and v1["run_id"] == run_id
    assert v1["description"] == "first" and v1["tags"] == [{"key": "stage", "value": "dev"}]
    v2 = new_version(api, name, run_id)
    assert v2["version"] == "2"

    got = good(api, "GET", "/model-versions/get", {"name": name, "version": "1"})
    assert got["model_version"]["source"] == v1["source"]
    bad(
        api, "GET", "/model-versions/get", {"name": name, "version": "9"}, "RESOURCE_DOES_NOT_EXIST"
    )
    bad(
        api, "GET", "/model-versions/get", {"name": name, "version": "x"}, "INVALID_PARAMETER_VALUE"
    )

    upd = {"name": name, "version": "1", "description": "changed"}
    changed = good(api, "PATCH", "/model-versions/update", upd)["model_version"]
    assert changed["description"] == "changed"
    assert changed["last_updated_timestamp"] >= changed["creation_timestamp"]
    tag = {"name": name, "version": "1", "key": "k", "value": "v"}
    good(api, "POST", "/model-versions/set-tag", tag)
    good(
        api, "DELETE", "/model-versions/delete-tag", {"name": name, "version": "1", "key": "stage"}
    )
    got = good(api, "GET", "/model-versions/get", {"name": name, "version": "1"})
    assert got["model_version"]["tags"] == [{"key": "k", "value": "v"}]

    good(api, "DELETE", "/model-versions/delete", {"name": name, "version": "2"})
    bad(
        api, "GET", "/model-versions/get", {"name": name, "version": "2"}, "RESOURCE_DOES_NOT_EXIST"
    )
    assert new_version(api, name, run_id)["version"] == "3"


def test_every_source_form_registers_the_same_files(
    api: httpx.Client, server: Any, mlflow_model_dir: tuple[Path, Any]
) -> None:
    name = model_name()
    good(api, "POST", "/registered-models/create", {"name": name})
    run_id = log_run(server, mlflow_model_dir[0])
    experiment = good(api, "GET", "/runs/get", {"run_id": run_id})["run"]["info"]["experiment_id"]
    tail = f"{experiment}/{run_id}/artifacts/model"
    sources = [
        f"runs:/{run_id}/model",
        f"mlflow-artifacts:/{tail}",
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{tail}",
        f"models:/{name}/1",  # a copy of a version of this registry (copy_model_version)
    ]
    for source in sources:
        v = new_version(api, name, run_id, source=source)
        assert v["source"] == source
    ours = api.get(f"/api/v1/models/{name}/versions").json()["versions"]
    assert len({v["manifest_sha256"] for v in ours}) == 1 and len(ours) == len(sources)
    assert {v["run_id"] for v in ours} == {run_id}


def test_unsupported_and_empty_sources_are_refused(api: httpx.Client, server: Any) -> None:
    name = model_name()
    good(api, "POST", "/registered-models/create", {"name": name})
    for source in ("s3://bucket/model", "file:///etc", "/tmp/model", "runs:/"):
        body = {"name": name, "source": source}
        assert "source" in bad(
            api, "POST", "/model-versions/create", body, "INVALID_PARAMETER_VALUE"
        )
    run_id = log_run(server, Path(__file__).parent, path="not-a-model")
    body = {"name": name, "source": f"runs:/{run_id}/not-a-model"}
    assert "MLmodel" in bad(api, "POST", "/model-versions/create", body, INVALID)
    body = {"name": name, "source": f"runs:/{run_id}/nothing-here"}
    assert "no files" in bad(api, "POST", "/model-versions/create", body, INVALID)


def test_a_model_whose_pickle_runs_code_is_refused(
    api: httpx.Client, server: Any, tmp_path: Path, mlflow_model_dir: tuple[Path, Any]
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text((mlflow_model_dir[0] / "MLmodel").read_text())
    (folder / "model.pkl").write_bytes(_payloads.os_system())
    name = model_name()
    good(api, "POST", "/registered-models/create", {"name": name})
    run_id = log_run(server, folder)
    body = {"name": name, "source": f"runs:/{run_id}/model"}
    msg = bad(api, "POST", "/model-versions/create", body, "INVALID_STATE")
    assert "code execution" in msg and "os.system" in msg
    got = good(api, "GET", "/registered-models/get", {"name": name})["registered_model"]
    assert "latest_versions" not in got


def test_aliases_stages_and_latest_versions(
    api: httpx.Client, server: Any, mlflow_model_dir: tuple[Path, Any]
) -> None:
    name = model_name()
    run_id = log_run(server, mlflow_model_dir[0])
    good(api, "POST", "/registered-models/create", {"name": name})
    for _ in range(3):
        new_version(api, name, run_id)

    alias = {"name": name, "alias": "challenger", "version": "2"}
    good(api, "POST", "/registered-models/alias", alias)
    rm = good(api, "GET", "/registered-models/get", {"name": name})["registered_model"]
    assert rm["aliases"] == [{"alias": "challenger", "version": "2"}]
    by_alias = good(api, "GET", "/registered-models/alias", {"name": name, "alias": "challenger"})
    assert by_alias["model_version"]["version"] == "2"
    assert by_alias["model_version"]["aliases"] == ["challenger"]
    bad_alias = {"name": name, "alias": "nope"}
    bad(api, "GET", "/registered-models/alias", bad_alias, MISSING)
    good(api, "DELETE", "/registered-models/alias", {"name": name, "alias": "challenger"})
    good(api, "DELETE", "/registered-models/alias", {"name": name, "alias": "challenger"})
    bad(
        api,
        "GET",
        "/registered-models/alias",
        {"name": name, "alias": "challenger"},
        MISSING,
    )

    def stage(version: str, to: str, archive: bool = False) -> dict[str, Any]:
        body = {"name": name, "version": version, "stage": to, "archive_existing_versions": archive}
        return good(api, "POST", "/model-versions/transition-stage", body)["model_version"]  # type: ignore[no-any-return]

    assert stage("1", "staging")["current_stage"] == "Staging"
    assert stage("2", "Staging", archive=True)["current_stage"] == "Staging"
    got = good(api, "GET", "/model-versions/get", {"name": name, "version": "1"})
    assert got["model_version"]["current_stage"] == "Archived"
    body = {"name": name, "version": "3", "stage": "Shipped", "archive_existing_versions": False}
    bad(api, "POST", "/model-versions/transition-stage", body, INVALID)
    body = {"name": name, "version": "3", "stage": "Archived", "archive_existing_versions": True}
    bad(api, "POST", "/model-versions/transition-stage", body, INVALID)

    latest = good(api, "POST", "/registered-models/get-latest-versions", {"name": name})
    assert {(v["version"], v["current_stage"]) for v in latest["model_versions"]} == {
        ("1", "Archived"),
        ("2", "Staging"),
        ("3", "None"),
    }
    staging = {"name": name, "stages": ["Staging"]}
    latest = good(api, "POST", "/registered-models/get-latest-versions", staging)
    assert [v["version"] for v in latest["model_versions"]] == ["2"]
    rm = good(api, "GET", "/registered-models/get", {"name": name})["registered_model"]
    assert {v["version"] for v in rm["latest_versions"]} == {"1", "2", "3"}


def test_search_model_versions(
    api: httpx.Client, server: Any, mlflow_model_dir: tuple[Path, Any]
) -> None:
    names = [model_name("sv"), model_name("sv")]
    runs = [log_run(server, mlflow_model_dir[0]) for _ in range(2)]
    for n in names:
        good(api, "POST", "/registered-models/create", {"name": n})
        for r in runs:
            new_version(api, n, r)

    def search(**params: Any) -> list[tuple[str, str]]:
        out = good(api, "GET", "/model-versions/search", params)
        return [(v["name"], v["version"]) for v in out["model_versions"]]

    assert search(filter=f"name='{names[0]}'") == [(names[0], "2"), (names[0], "1")]
    assert search(filter=f"name = '{names[0]}'", order_by=["version_number ASC"]) == [
        (names[0], "1"),
        (names[0], "2"),
    ]
    assert sorted(search(filter=f"run_id = '{runs[1]}'")) == [(n, "2") for n in sorted(names)]
    in_runs = f"run_id IN ('{runs[0]}', '{runs[1]}') AND name = '{names[1]}'"
    assert len(search(filter=in_runs)) == 2
    source = f"source_path LIKE 'runs:/{runs[0]}/%' AND name='{names[1]}'"
    assert search(filter=source) == [(names[1], "1")]
    assert search(filter=f"name='{names[1]}' AND version_number >= 2") == [(names[1], "2")]
    assert search(filter="name='no-such-model'") == []

    pages, token, params = [], None, {"filter": f"name LIKE '{names[0][:2]}-%'"}
    while True:
        out = good(
            api,
            "GET",
            "/model-versions/search",
            {**params, "max_results": 1, **({"page_token": token} if token else {})},
        )
        pages += [(v["name"], v["version"]) for v in out["model_versions"]]
        token = out.get("next_page_token")
        if not token:
            break
    assert set(pages) >= {(n, v) for n in names for v in ("1", "2")}
    assert len(pages) == len(set(pages))

    for bad_filter in ("stage = 'x'", "run_id LIKE", "version_number = 'one'", "tags.a IN ('b')"):
        bad(api, "GET", "/model-versions/search", {"filter": bad_filter}, INVALID)


# -- downloads -------------------------------------------------------------------------------


def test_download_uri_serves_the_registered_bytes_and_refuses_tampered_ones(
    api: httpx.Client, server: Any, mlflow_model_dir: tuple[Path, Any], tmp_path: Path
) -> None:
    # A file of its own makes this version's content (and so its cache folder) unique.
    folder = tmp_path / "model"
    shutil.copytree(mlflow_model_dir[0], folder)
    (folder / "notes.txt").write_text(uuid.uuid4().hex)
    name = model_name()
    good(api, "POST", "/registered-models/create", {"name": name})
    new_version(api, name, log_run(server, folder))
    out = good(api, "GET", "/model-versions/get-download-uri", {"name": name, "version": "1"})
    uri = out["artifact_uri"]
    assert uri.startswith(server.url + MLFLOW) and uri.endswith("/mlflow-artifacts/artifacts")

    listing_url = uri.rsplit("/mlflow-artifacts/artifacts", 1)[0] + "/mlflow-artifacts/artifacts"
    top = httpx.get(listing_url, params={"path": ""}).json()["files"]
    expected = sorted(p.name for p in folder.iterdir())
    assert [f["path"] for f in top] == expected
    assert all(not f["is_dir"] and f["file_size"] > 0 for f in top)
    assert httpx.get(listing_url, params={"path": "MLmodel"}).json() == {}
    for f in top:
        body = httpx.get(f"{uri}/{f['path']}").content
        assert body == (folder / f["path"]).read_bytes()

    missing = httpx.get(f"{uri}/no-such-file")
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # Bytes in the server's cache that differ from the registered digest are never served.
    notes = next(
        p
        for p in (server_home(server) / "cache" / "models").glob("*/model/notes.txt")
        if p.read_text() == (folder / "notes.txt").read_text()
    )
    cached = notes.parent / "MLmodel"
    cached.write_text(cached.read_text() + "\n# changed")
    r = httpx.get(f"{uri}/MLmodel")
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_STATE"
    assert "SHA-256" in r.json()["message"]


def server_home(server: Any) -> Path:
    return Path(server.log.name).parent


# -- the same registry as /api/v1 ------------------------------------------------------------


def test_mlflow_versions_are_registry_versions_and_promotion_rules_apply(
    api: httpx.Client, server: Any, mlflow_model_dir: tuple[Path, Any]
) -> None:
    name = model_name()
    good(api, "POST", "/registered-models/create", {"name": name})
    run_id = log_run(server, mlflow_model_dir[0], auc=0.7)
    new_version(api, name, run_id)

    ours = api.get(f"/api/v1/models/{name}/versions").json()["versions"]
    assert [(v["version"], v["flavor"], v["format"]) for v in ours] == [(1, "pyfunc", "mlflow")]
    assert ours[0]["scan_verdict"] == "safe" and ours[0]["metrics"] == {"auc": 0.7}
    assert ours[0]["source"] == f"runs:/{run_id}/model"

    policy = {"policy": {"rules": ["auc >= 0.9"]}}
    assert api.put(f"/api/v1/models/{name}/policy", json=policy).status_code == 200
    champion = {"name": name, "alias": "champion", "version": "1"}
    msg = bad(api, "POST", "/registered-models/alias", champion, "INVALID_STATE")
    assert "may not become 'champion'" in msg and "auc >= 0.9 fails: auc is 0.7" in msg
    stage = {
        "name": name,
        "version": "1",
        "stage": "Production",
        "archive_existing_versions": False,
    }
    msg = bad(api, "POST", "/model-versions/transition-stage", stage, "INVALID_STATE")
    assert "may not move to Production" in msg and "auc is 0.7" in msg
    got = good(api, "GET", "/model-versions/get", {"name": name, "version": "1"})
    assert got["model_version"]["current_stage"] == "None"

    # The other way: an alias set through /api/v1 is an MLflow alias.
    assert (
        api.put(f"/api/v1/models/{name}/aliases/candidate", json={"version": 1}).status_code == 200
    )
    rm = good(api, "GET", "/registered-models/get", {"name": name})["registered_model"]
    assert rm["aliases"] == [{"alias": "candidate", "version": "1"}]


def test_audit_records_mlflow_registry_changes(
    api: httpx.Client, server: Any, mlflow_model_dir: tuple[Path, Any]
) -> None:
    name = model_name()
    good(api, "POST", "/registered-models/create", {"name": name})
    new_version(api, name, log_run(server, mlflow_model_dir[0]))
    good(api, "GET", "/model-versions/get-download-uri", {"name": name, "version": "1"})
    good(api, "DELETE", "/registered-models/delete", {"name": name})
    with sqlite3.connect(server_home(server) / "mlplane.db") as db:
        rows = db.execute(
            "SELECT action FROM audit_events WHERE resource LIKE ?", (f"model/{name}%",)
        ).fetchall()
    actions = {a for (a,) in rows}
    assert {"model.create", "model.version.create", "model.load", "model.delete"} <= actions
