"""Helpers shared by the CLI tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from typer.testing import Result

from mlplane.client import Client
from mlplane.tracking.entities import Metric, RunInput

Invoke = Callable[..., Result]
"""``cli("runs", "ls")``: the ``cli`` fixture's type."""


def make_runs(c: Client, experiment: str = "exp-a") -> tuple[str, list[str]]:
    """An experiment with three finished runs differing in ``lr`` and ``acc``."""
    eid = c.create_experiment(experiment, tags={"team": "vision"})
    ids = []
    now = time.time_ns() // 1_000_000
    for i, (lr, acc) in enumerate([(0.1, 0.80), (0.01, 0.95), (0.001, 0.90)]):
        run = c.create_run(eid, run_name=f"lr-{lr}", start_time=now + i)
        rid = run.info.run_id
        c.log_batch(
            rid,
            metrics=[Metric("acc", acc, now, 0), Metric("loss", 1 - acc, now, 0)],
            params={"lr": lr, "model": "mlp"},
            tags={"team": "vision", "mlplane.seed": "7"},
        )
        c.log_inputs(rid, [RunInput(kind="dataset", name="toy/data", version="1")])
        c.log_text(rid, "hello", "notes/readme.txt")
        c.set_terminated(rid, "FINISHED")
        ids.append(rid)
    return eid, ids
