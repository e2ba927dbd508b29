"""The experiments pages over plain HTTP: bad input as 4xx pages, permissions, paging links,
each kind of artifact preview, and the headers that keep raw artifacts inert."""

from __future__ import annotations

import html
import io
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from mlplane.security import local_admin
from mlplane.tracking.entities import MetricColumns
from tests.conftest import ServerProcess
from tests.ui.conftest import Seeded, png

ROOT = local_admin("root")
RUNS = 25


@pytest.fixture(scope="module")
def data(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An experiment of RUNS runs, and a run with a file of every kind, system metrics,
    context tags and a nested child."""
    svc = seeded.svc.tracking
    eid = svc.create_experiment(ROOT, f"http-{uuid.uuid4().hex[:6]}")
    runs = []
    for i in range(RUNS):
        rid = svc.create_run(ROOT, eid, run_name=f"h-{i:02d}", start_time=1_765_200_000_000 + i)
        svc.log_batch(
            ROOT,
            rid.info.run_id,
            metrics=MetricColumns(["acc"], [i / RUNS], [1], [0]),
            params={"even": str(i % 2 == 0).lower()},
        )
        runs.append(rid.info.run_id)
    tags = {
        "mlplane.git.commit": "0123456789abcdef0123456789abcdef01234567",
        "mlplane.python.version": "3.12.1",
        "mlplane.pkg.numpy": "2.1.0",
        "mlplane.source.name": "train.py",
    }
    odd = svc.create_run(ROOT, eid, run_name="odd", tags=tags).info.run_id
    svc.log_batch(
        ROOT,
        odd,
        metrics=MetricColumns(
            ["system/cpu_utilization_percentage"] * 3,
            [10.0, 50.0, 30.0],
            [0, 1000, 2000],
            [0, 1, 2],
        ),
    )
    child = svc.create_run(ROOT, eid, run_name="child", parent_run_id=odd).info.run_id
    folder = tmp_path_factory.mktemp("odd")
    files = {
        "big.txt": ("x" * 99 + "\n").encode() * 3000,  # 300 kB: past the preview's 256 KiB
        "data.json": json.dumps({"a": 1, "b": [1, 2]}).encode(),
        "rows.jsonl": b"".join(json.dumps({"n": i}).encode() + b"\n" for i in range(150)),
        "drawing.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "page.html": b"<html><script>alert(1)</script></html>",
        "blob.bin": bytes(range(256)) * 4,
        "plot.png": png(),
        "nested/inner.txt": b"inside\n",
    }
    buf = io.BytesIO()
    pd.DataFrame({"k": range(250), "v": [f"v{i}" for i in range(250)]}).to_parquet(buf)
    files["t.parquet"] = buf.getvalue()
    for name, content in files.items():
        path = folder / name.replace("/", "_")
        path.write_bytes(content)
        svc.log_artifact(ROOT, odd, name, path)
    nobody = f"nobody-{uuid.uuid4().hex[:6]}"
    seeded.svc.identities.create_identity(ROOT, nobody)
    outsider = seeded.svc.identities.create_token(ROOT, nobody).secret
    return {"eid": eid, "runs": runs, "odd": odd, "child": child, "outsider": outsider}


@pytest.fixture(scope="module")
def http(server: ServerProcess, seeded: Seeded) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {seeded.tokens['viewer']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


def _rows(text: str) -> list[str]:
    return re.findall(r'<tr data-run="([0-9a-f]+)"', text)


def _link(text: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', text)
    return html.unescape(found.group(1)) if found else None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page_size=5", "page_size must be between 10 and 500"),
        ("page_size=501", "page_size must be between 10 and 500"),
        ("page_size=many", "page_size must be a whole number"),
        ("page=0", "page must be between"),
        ("view=gone", "view must be one of active, deleted, all"),
    ],
)
def test_bad_table_options_are_400_pages(
    http: httpx.Client, data: dict[str, Any], query: str, message: str
) -> None:
    r = http.get(f"/ui/experiments/{data['eid']}?{query}")
    assert r.status_code == 400
    assert message in html.unescape(r.text)


def test_bad_filter_and_order_keep_the_page(http: httpx.Client, data: dict[str, Any]) -> None:
    r = http.get(f"/ui/experiments/{data['eid']}", params={"filter": "metrics.acc >> 1"})
    assert r.status_code == 400
    assert 'id="search-error"' in r.text and "column" in r.text
    assert 'value="metrics.acc &gt;&gt; 1"' in r.text  # the form keeps what was typed
    r = http.get(f"/ui/experiments/{data['eid']}", params={"order": "metrics.acc SIDEWAYS"})
    assert r.status_code == 400
    assert "Cannot sort so" in r.text
    assert "SIDEWAYS" not in (_link(r.text, "next") or "")


def test_missing_things_are_404_and_malformed_ids_400(http: httpx.Client) -> None:
    assert http.get("/ui/experiments/987654").status_code == 404
    assert http.get("/ui/runs/" + "0" * 32).status_code == 404
    assert http.get("/ui/experiments/not-a-number").status_code == 400


def test_a_caller_without_a_role_is_refused(
    server: ServerProcess, seeded: Seeded, data: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {data['outsider']}"}
    with httpx.Client(base_url=server.url, headers=headers) as outsider:
        odd = data["odd"]
        for path in (
            f"/ui/experiments/{data['eid']}",
            f"/ui/runs/{odd}",
            f"/ui/runs/{odd}/artifacts/data.json",
            f"/ui/runs/{odd}/raw/data.json",
        ):
            assert outsider.get(path).status_code == 403, path
        listing = outsider.get("/ui/experiments")
        assert listing.status_code == 200 and seeded.experiment not in listing.text
    anonymous = httpx.get(f"{server.url}/ui/runs/{data['odd']}")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/ui/login?next=")


def test_pages_keep_size_and_filter_and_end(http: httpx.Client, data: dict[str, Any]) -> None:
    url: str | None = (
        f"/ui/experiments/{data['eid']}?page_size=10&filter=attributes.run_name+LIKE+'h-%25'"
    )
    pages = []
    while url:
        r = http.get(url)
        assert r.status_code == 200
        pages.append(_rows(r.text))
        url = _link(r.text, "next")
        if url:
            assert "page_size=10" in url and "filter=" in url
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sorted(r for p in pages for r in p) == sorted(data["runs"])
    beyond = http.get(f"/ui/experiments/{data['eid']}?page=9&page_size=10")
    assert beyond.status_code == 200 and "No more runs" in beyond.text
    assert _link(beyond.text, "prev") is not None


def test_filter_by_param_and_explicit_columns(http: httpx.Client, data: dict[str, Any]) -> None:
    r = http.get(
        f"/ui/experiments/{data['eid']}",
        params={"filter": "params.even = 'true'", "metrics": "acc", "params": ""},
    )
    assert len(_rows(r.text)) == 13
    assert 'data-key="metrics.acc"' in r.text and 'data-key="params.even"' not in r.text


@pytest.mark.parametrize(
    "path",
    ["%2E%2E/%2E%2E/etc/passwd", "nested/%2E%2E/%2E%2E/x", "..%2Fsecret"],
)
def test_path_traversal_is_refused(http: httpx.Client, data: dict[str, Any], path: str) -> None:
    for route in ("artifacts", "raw"):
        r = http.get(f"/ui/runs/{data['odd']}/{route}/{path}")
        assert r.status_code == 400, (route, path, r.status_code)
        assert "may not contain" in html.unescape(r.text)


def test_raw_files_are_served_inert(http: httpx.Client, data: dict[str, Any]) -> None:
    base = f"/ui/runs/{data['odd']}/raw"
    image = http.get(f"{base}/plot.png")
    assert image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("inline")
    assert "sandbox" in image.headers["content-security-policy"]
    assert image.content == png()
    for name in ("drawing.svg", "page.html"):
        r = http.get(f"{base}/{name}")
        assert r.headers["content-disposition"].startswith("attachment"), name
        assert "sandbox" in r.headers["content-security-policy"]
        assert "text/html" not in r.headers["content-type"]
    text = http.get(f"{base}/data.json")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.headers["content-disposition"].startswith("inline")
    download = http.get(f"{base}/data.json?download=1")
    assert download.headers["content-disposition"].startswith('attachment; filename="data.json"')
    assert http.get(f"{base}/blob.bin").headers["content-type"] == "application/octet-stream"


def test_previews_of_each_kind(http: httpx.Client, data: dict[str, Any]) -> None:
    base = f"/ui/runs/{data['odd']}/artifacts"
    big = http.get(f"{base}/big.txt").text
    assert 'id="cut-note"' in big and "256.0 KiB" in big
    shown = re.search(r'<pre class="preview" id="preview-text">(.*?)</pre>', big, re.S)
    assert shown and len(shown.group(1)) == 256 * 1024
    pretty = re.search(r'id="preview-text">(.*?)</pre>', http.get(f"{base}/data.json").text, re.S)
    assert pretty and html.unescape(pretty.group(1)) == json.dumps({"a": 1, "b": [1, 2]}, indent=2)
    jsonl = http.get(f"{base}/rows.jsonl").text
    assert jsonl.count("<tr><td>") == 100
    parquet = http.get(f"{base}/t.parquet").text
    assert "First 100 of 250 rows" in parquet and "<td>v99</td>" in parquet
    assert 'id="no-preview"' in http.get(f"{base}/blob.bin").text
    svg = http.get(f"{base}/drawing.svg").text
    assert 'id="preview-image"' in svg and "<script>alert" not in svg
    folder = http.get(f"{base}/nested")
    assert folder.status_code == 200 and "nested/inner.txt" in folder.text
    assert http.get(f"{base}/nothing-here.txt").status_code == 404


def test_run_page_context_system_metrics_and_parent(
    http: httpx.Client, data: dict[str, Any]
) -> None:
    odd = http.get(f"/ui/runs/{data['odd']}").text
    system = odd[odd.index('id="system"') :]
    assert 'data-metric="system/cpu_utilization_percentage"' in system
    spec = re.search(r'<script type="application/json" id="(chart-\d+)">(.*?)</script>', system)
    assert spec and json.loads(spec.group(2))["series"][0]["y"] == [10.0, 50.0, 30.0]
    assert "0123456789abcdef0123456789abcdef01234567" in odd and "train.py" in odd
    assert "numpy" in odd and "3.12.1" in odd
    assert odd.count('class="tree"') >= 2  # the nested folder
    child = http.get(f"/ui/runs/{data['child']}").text
    assert f'href="/ui/runs/{data["odd"]}" id="parent-run">odd<' in child


def test_run_page_shows_a_dataset_input_s_source_profile_and_schema(
    http: httpx.Client, seeded: Seeded
) -> None:
    from mlplane.tracking.entities import RunInput

    svc = seeded.svc.tracking
    eid = svc.create_experiment(ROOT, f"described-{uuid.uuid4().hex[:6]}")
    rid = svc.create_run(ROOT, eid).info.run_id
    schema = '{"mlflow_colspec": [{"type": "double", "name": "<amount>"}]}'
    svc.log_inputs(
        ROOT,
        rid,
        [RunInput("dataset", "frame", source_type="s3", schema=schema, profile='{"num_rows": 3}')],
    )
    row = http.get(f"/ui/runs/{rid}").text.split('<tr data-dataset="frame">', 1)[1]
    row = row.split("</tr>", 1)[0]
    assert "<td>s3</td>" in row and "{&#34;num_rows&#34;: 3}" in row
    assert "&lt;amount&gt;" in row and "<amount>" not in row  # shown as text


def test_a_viewer_cannot_delete_a_run(
    http: httpx.Client, seeded: Seeded, data: dict[str, Any]
) -> None:
    assert 'action="/ui/runs/' not in http.get(f"/ui/runs/{data['odd']}").text
    assert http.post(f"/ui/runs/{data['odd']}/delete").status_code == 403
    assert seeded.svc.tracking.get_run(ROOT, data["odd"]).info.lifecycle_stage == "active"
