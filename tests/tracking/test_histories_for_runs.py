"""Metric histories of many runs in one call (the UI's compare page)."""

from __future__ import annotations

import pytest

from mlplane.errors import NotFound, PermissionDenied
from mlplane.security import Principal, local_admin
from mlplane.services import Services
from mlplane.tracking.entities import MetricColumns

ME = local_admin("tester")


def test_many_runs_at_once_match_one_run_at_a_time(svc: Services) -> None:
    eid = svc.tracking.create_experiment(ME, "bulk")
    runs = [svc.tracking.create_run(ME, eid).info.run_id for _ in range(4)]
    for i, run in enumerate(runs):
        steps = list(range(10 + i))
        svc.tracking.log_batch(
            ME,
            run,
            metrics=MetricColumns(
                ["loss"] * len(steps) + ["acc"] * 3,
                [float(s * (i + 1)) for s in reversed(steps)] + [0.1, 0.2, float("nan")],
                [1000 + s for s in steps] + [1, 2, 3],
                [*steps, 0, 1, 2],
            ),
        )
    silent = svc.tracking.create_run(ME, eid).info.run_id  # logged nothing
    got = svc.tracking.get_metric_histories_for_runs(ME, [*runs, silent, runs[0]])
    assert list(got) == [*runs, silent] and got[silent] == {}
    for run in runs:
        assert got[run] == svc.tracking.get_metric_histories(ME, run)
    only = svc.tracking.get_metric_histories_for_runs(ME, runs, ["acc"])
    assert all(set(h) == {"acc"} for h in only.values())
    assert [m.step for m in only[runs[2]]["acc"]] == [0, 1, 2]


def test_every_run_must_exist_and_be_readable(svc: Services) -> None:
    mine = svc.tracking.create_run(ME, svc.tracking.create_experiment(ME, "mine")).info.run_id
    theirs = svc.tracking.create_run(
        ME, svc.tracking.create_experiment(ME, "theirs", project="secret")
    ).info.run_id
    with pytest.raises(NotFound, match="does not exist"):
        svc.tracking.get_metric_histories_for_runs(ME, [mine, "f" * 32])
    viewer = Principal(name="vic", roles={"default": "viewer"})
    assert svc.tracking.get_metric_histories_for_runs(viewer, [mine]) == {mine: {}}
    with pytest.raises(PermissionDenied):
        svc.tracking.get_metric_histories_for_runs(viewer, [mine, theirs])
