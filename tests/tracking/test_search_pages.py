"""A page of searched runs is loaded in a few set-based queries (``_rows.load_runs``): each
run must still get exactly its own params, tags, latest metrics (with their time and step)
and inputs, however the page is split into chunks, and the search still checks who may read
each experiment."""

from __future__ import annotations

import math

import pytest

from mlplane.errors import PermissionDenied
from mlplane.security import Principal, local_admin
from mlplane.services import Services
from mlplane.tracking import _rows
from mlplane.tracking.entities import MetricColumns, Run, RunInput

ME = local_admin("tester")


def _seed(svc: Services, eid: str, n: int) -> list[str]:
    runs = []
    for i in range(n):
        run = svc.tracking.create_run(ME, eid, run_name=f"r{i}", start_time=1_000 + i)
        rid = run.info.run_id
        keys = [f"m{k}" for k in range(i + 1)]  # a different number of metrics per run
        svc.tracking.log_batch(
            ME,
            rid,
            metrics=MetricColumns(
                [*keys, "loss", "loss"],
                [float(i * 10 + k) for k in range(len(keys))] + [0.5, math.nan if i == 2 else i],
                [100 + i] * len(keys) + [1, 2],
                [i] * len(keys) + [0, 7 + i],
            ),
            params={f"p{k}": f"{i}-{k}" for k in range(3)},
            tags={"team": f"t{i}"} if i % 2 else {},
        )
        if i == 3:
            dataset = RunInput("dataset", "d", digest="x", context="train")
            svc.tracking.log_inputs(ME, rid, [dataset])
        runs.append(rid)
    return runs


def _same(a: Run, b: Run) -> bool:
    """Equal, metric times and steps included (``RunData`` leaves them out of ``==``)."""
    return a == b and a.data.metric_points == b.data.metric_points


@pytest.mark.parametrize("chunk", [2, 500])
def test_each_searched_run_carries_its_own_data(
    svc: Services, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(_rows, "_CHUNK", chunk)
    eid = svc.tracking.create_experiment(ME, "pages")
    runs = _seed(svc, eid, 5)
    page = svc.tracking.search_runs(ME, [eid], filter_string="metrics.m0 >= 10")
    assert [r.info.run_name for r in page.runs] == ["r4", "r3", "r2", "r1"]
    for run in page.runs:
        assert _same(run, svc.tracking.get_run(ME, run.info.run_id))
    r2 = next(r for r in page.runs if r.info.run_name == "r2")
    assert math.isnan(r2.data.metrics["loss"]) and r2.data.metric_points["loss"] == (2, 9)
    assert r2.data.metric_points["m2"] == (102, 2) and r2.data.params["p1"] == "2-1"
    r3 = next(r for r in page.runs if r.info.run_name == "r3")
    assert [i.context for i in r3.inputs] == ["train"] and r3.data.tags["team"] == "t3"
    everything = svc.tracking.search_runs(ME, [eid], max_results=3)
    rest = svc.tracking.search_runs(ME, [eid], max_results=3, page_token=everything.next_page_token)
    assert [r.info.run_id for r in [*everything.runs, *rest.runs]] == runs[::-1]


def test_a_search_checks_every_experiment_it_reads(svc: Services) -> None:
    mine = svc.tracking.create_experiment(ME, "mine")
    theirs = svc.tracking.create_experiment(ME, "theirs", project="secret")
    _seed(svc, mine, 1)
    viewer = Principal(name="vic", roles={"default": "viewer"})
    assert len(svc.tracking.search_runs(viewer, [mine]).runs) == 1
    with pytest.raises(PermissionDenied):
        svc.tracking.search_runs(viewer, [mine, theirs])
