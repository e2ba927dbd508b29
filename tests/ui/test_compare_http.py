"""The compare page and its curves' JSON over HTTP (a real server, tokens as Bearer): what
a wrong ``?runs=`` answers, who may read what, and how long curves are downsampled."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mlplane.tracking.entities import Metric, MetricColumns
from mlplane.ui.pages import _compare_data
from tests.conftest import ServerProcess
from tests.ui.conftest import ROOT, Seeded

N = 5000
SPIKE_AT, DIP_AT = 1234, 3777


@dataclass
class Extra:
    secret_run: str
    spiky: list[str]
    """Two runs named alike, with N points of ``wave`` (a spike and a dip in the middle)."""


@pytest.fixture(scope="module")
def extra(seeded: Seeded) -> Extra:
    svc = seeded.svc
    secret = svc.tracking.create_experiment(
        ROOT, f"secret-{uuid.uuid4().hex[:6]}", project="secret"
    )
    secret_run = svc.tracking.create_run(ROOT, secret, run_name="hidden").info.run_id
    spiky_exp = svc.tracking.create_experiment(ROOT, f"spiky-{uuid.uuid4().hex[:6]}")
    spiky = []
    for r in range(2):
        rid = svc.tracking.create_run(ROOT, spiky_exp, run_name="spiky").info.run_id
        values = [math.sin(s / 50) + r for s in range(N)]
        values[SPIKE_AT] = 100.0
        values[DIP_AT] = -100.0
        svc.tracking.log_batch(
            ROOT,
            rid,
            metrics=MetricColumns(
                ["wave"] * N, values, [1_765_000_000_000 + s for s in range(N)], list(range(N))
            ),
        )
        spiky.append(rid)
    return Extra(secret_run, spiky)


@pytest.fixture
def viewer(server: ServerProcess, seeded: Seeded) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {seeded.tokens['viewer']}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as c:
        yield c


def _page(client: httpx.Client, runs: list[str], **params: Any) -> httpx.Response:
    return client.get("/ui/compare", params={"runs": ",".join(runs), **params})


def test_too_few_or_too_many_runs_is_a_400_page_that_says_what_to_change(
    viewer: httpx.Client, seeded: Seeded
) -> None:
    r = viewer.get("/ui/compare")
    assert r.status_code == 400 and "text/html" in r.headers["content-type"]
    assert "at least 2 runs" in r.text
    one = _page(viewer, [seeded.runs["run-a"]])
    assert one.status_code == 400 and "at least 2 runs" in one.text
    same_twice = _page(viewer, [seeded.runs["run-a"]] * 2)
    assert same_twice.status_code == 400  # one run, named twice
    many = _page(viewer, [uuid.uuid4().hex for _ in range(101)])
    assert many.status_code == 400
    assert "at most 100 runs" in many.text and "remove 1" in many.text


def test_an_unknown_run_is_a_404_naming_it(viewer: httpx.Client, seeded: Seeded) -> None:
    missing = uuid.uuid4().hex
    r = _page(viewer, [seeded.runs["run-a"], missing])
    assert r.status_code == 404
    assert missing in r.text and "remove" in r.text


def test_a_run_of_a_project_the_caller_cannot_read_is_a_403(
    viewer: httpx.Client, seeded: Seeded, extra: Extra
) -> None:
    runs = [seeded.runs["run-a"], extra.secret_run]
    assert _page(viewer, runs).status_code == 403
    api = viewer.get("/ui/api/compare/metrics", params={"runs": ",".join(runs), "key": "loss"})
    assert api.status_code == 403
    assert api.headers["content-type"].startswith("application/problem+json")


def test_the_page_holds_the_runs_their_links_and_the_diff(
    viewer: httpx.Client, seeded: Seeded
) -> None:
    a, b = seeded.runs["run-a"], seeded.runs["run-b"]
    r = _page(viewer, [a, b])
    assert r.status_code == 200
    for rid in (a, b):
        assert f'href="/ui/runs/{rid}"' in r.text
    assert f'href="/ui/experiments/{seeded.experiment_id}"' in r.text
    assert 'data-metric="loss"' in r.text and 'data-metric="accuracy"' in r.text
    assert '<tr data-group="params" data-key="lr" class="diff-chg">' in r.text
    assert '<tr data-group="tags" data-key="team">' in r.text
    only = _page(viewer, [a, b], only="diff")
    assert 'data-key="lr"' in only.text and 'data-key="team"' not in only.text
    picked = _page(viewer, [a, b], key="loss")
    assert 'data-metric="loss"' in picked.text and 'data-metric="accuracy"' not in picked.text
    assert _page(viewer, [a, b], key="nope").status_code == 400
    assert _page(viewer, [a, b], x="params.nope").status_code == 400


def test_the_curves_json_keeps_short_series_whole(viewer: httpx.Client, seeded: Seeded) -> None:
    a, b = seeded.runs["run-a"], seeded.runs["run-b"]
    r = viewer.get("/ui/api/compare/metrics", params={"runs": f"{a},{b}", "key": "loss"})
    assert r.status_code == 200
    spec = r.json()
    assert spec["kind"] == "lines" and spec["downsampled"] == 0
    assert [s["label"] for s in spec["series"]] == ["run-a", "run-b"]
    assert [s["color"] for s in spec["series"]] == [0, 1]
    history = seeded.svc.tracking.get_metric_history(ROOT, a, "loss")
    first = spec["series"][0]
    assert first["y"] == [m.value for m in history]
    assert first["step"] == [m.step for m in history]
    assert first["time"] == [m.timestamp for m in history]


def test_one_value_per_run_is_drawn_as_bars_not_as_invisible_curves(
    viewer: httpx.Client, seeded: Seeded
) -> None:
    exp = seeded.svc.tracking.create_experiment(ROOT, f"finals-{uuid.uuid4().hex[:6]}")
    runs = []
    for i, name in enumerate(("short-a", "short-b", "silent")):
        rid = seeded.svc.tracking.create_run(ROOT, exp, run_name=name).info.run_id
        if name != "silent":
            seeded.svc.tracking.log_batch(
                ROOT, rid, metrics=MetricColumns(["final"], [0.5 + i / 10], [1], [0])
            )
        runs.append(rid)
    spec = viewer.get(
        "/ui/api/compare/metrics", params={"runs": ",".join(runs), "key": "final"}
    ).json()
    assert spec["kind"] == "bars" and spec["labels"] == ["short-a", "short-b"]
    assert spec["series"] == [{"label": "final", "y": [0.5, 0.6]}]
    assert spec["runs_logged"] == 2  # the third run logged no "final"


def test_the_curves_json_downsamples_long_series_keeping_ends_and_extremes(
    viewer: httpx.Client, extra: Extra
) -> None:
    r = viewer.get("/ui/api/compare/metrics", params={"runs": ",".join(extra.spiky), "key": "wave"})
    assert r.status_code == 200
    spec = r.json()
    assert spec["downsampled"] == 2 and spec["max_points"] == _compare_data.MAX_POINTS
    # Two runs of one name: each label gets a short id.
    assert [s["label"] for s in spec["series"]] == [f"spiky ({rid[:7]})" for rid in extra.spiky]
    for s in spec["series"]:
        assert s["total"] == N
        assert len(s["y"]) <= _compare_data.MAX_POINTS
        assert s["step"][0] == 0 and s["step"][-1] == N - 1
        assert s["step"] == sorted(s["step"])
        assert max(s["y"]) == 100.0 and s["step"][s["y"].index(100.0)] == SPIKE_AT
        assert min(s["y"]) == -100.0 and s["step"][s["y"].index(-100.0)] == DIP_AT


def test_the_curves_json_refuses_without_a_key_or_a_session(
    viewer: httpx.Client, server: ServerProcess, seeded: Seeded
) -> None:
    runs = f"{seeded.runs['run-a']},{seeded.runs['run-b']}"
    r = viewer.get("/ui/api/compare/metrics", params={"runs": runs})
    assert r.status_code == 400 and "key" in r.json()["detail"]
    anonymous = httpx.get(
        f"{server.url}/ui/api/compare/metrics", params={"runs": runs, "key": "loss"}
    )
    assert anonymous.status_code == 401  # JSON under /ui/api/: no redirect to the login page
    assert anonymous.headers["content-type"].startswith("application/problem+json")


def test_downsample_keeps_every_bucket_extreme_and_leaves_nan_buckets_a_point() -> None:
    points = [Metric("m", float(i % 7), i, i) for i in range(10_000)]
    points[5000] = Metric("m", float("nan"), 5000, 5000)
    out = _compare_data.downsample(points, limit=100)
    assert len(out) <= 100
    assert out[0] == points[0] and out[-1] == points[-1]
    assert {p.value for p in out if not math.isnan(p.value)} >= {0.0, 6.0}
    assert _compare_data.downsample(points[:50], limit=100) == points[:50]
    gaps = [Metric("m", float("nan"), i, i) for i in range(1000)]
    assert 0 < len(_compare_data.downsample(gaps, limit=100)) <= 100
