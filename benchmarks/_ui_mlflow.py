"""Seeds MLflow's own store for ``benchmarks/ui.py``; runs inside the MLflow virtualenv.

``python _ui_mlflow.py DB_URI ARTIFACT_ROOT RUNS CURVE_RUNS STEPS`` writes the same runs
as our side (``_ui_data.py`` generates both) through MLflow's ``SqlAlchemyStore``, in
process: MLflow's server would take minutes to create 10,000 runs over HTTP, and the page
loads are what the benchmark measures, not the seeding. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _ui_data import BASE_TS, curve, run_spec


def main() -> None:
    from mlflow.entities import Metric, Param
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri, root, runs, curve_runs, steps = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    store = SqlAlchemyStore(uri, root)
    eid = store.create_experiment("ui-bench")
    t0 = time.perf_counter()
    ids: list[str] = []
    for i in range(runs):
        name, params, metrics = run_spec(i)
        run = store.create_run(eid, "bench", BASE_TS + i * 1000, [], name)
        points = [Metric(k, v, BASE_TS + i * 1000, 0) for k, v in metrics.items()]
        if i >= runs - curve_runs:
            points += [Metric("curve", v, BASE_TS + s * 1000, s) for s, v in curve(i, steps)]
        store.log_batch(run.info.run_id, [], [Param(k, v) for k, v in params.items()], [])
        for start in range(0, len(points), 1000):  # MLflow's limit per batch
            store.log_batch(run.info.run_id, points[start : start + 1000], [], [])
        ids.append(run.info.run_id)
    print(json.dumps({"experiment_id": eid, "run_ids": ids, "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
