"""Batch inference: ``mlplane predict`` end to end against ``model.predict`` on the table in memory.

    .venv/bin/python benchmarks/batch_predict.py [--quick] [--rows N] [--workers N] [--json PATH]

The model is a scikit-learn ``GradientBoostingClassifier(n_estimators=100, max_depth=3)``
on 20 numeric features, fitted on 20,000 rows and registered in a fresh store under
``.bench/batch/``. The input is 10 million rows of Parquet (``--quick``: 1 million),
written once under ``.bench/batch/`` in row groups of 1,048,576 rows (pyarrow's and
pandas' default), and reused by later runs.

* **ours**: the whole command, ``mlplane predict bench@1 --input … --output …
  --json``, in a child process, timed from its start to its exit: interpreter start,
  imports, fetching and verifying the model, the worker processes and their imports,
  reading, predicting, writing the parts and combining them into one file.
* **the limit**: ``model.predict(frame)`` with the native scikit-learn model on the
  whole table, already read into a pandas DataFrame; only that call is timed. It is
  one process on one core: the figure that streaming and parallel workers must come
  near despite their start-up, with bounded memory.

Peak memory is sampled over the child and all its descendants: the sum of their
proportional set sizes (pages shared by forked workers count once), once a second, and
the largest single process's RSS, every 50 ms. Both sides' predictions are compared.

Ours pays a fixed start of several seconds that the limit does not: two interpreters
(the command and the workers' forkserver) and their imports, of which ``skops.io`` alone
takes ~3.5 s here (it imports every scikit-learn module, and through one of them
torch when it is installed). At 1 million rows that start is most of the time; at
10 million it is amortized.

Timings on a shared machine are noisy: read the ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench" / "batch"
FEATURES = [f"f{i}" for i in range(20)]
ROW_GROUP = 1 << 20
GOAL = 0.70
MIB = 1 << 20


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- data and model ------------------------------------------------------------------------------


def _features(rng: Any, n: int) -> Any:
    return rng.standard_normal((n, len(FEATURES)))


def _label(x: Any) -> Any:
    return (x[:, 0] + x[:, 1] * x[:, 2] - 0.5 * x[:, 3] > 0).astype("int64")


def ensure_data(rows: int) -> Path:
    """``rows`` rows of the 20 features as Parquet, written once (deterministic)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = BENCH / f"input-{rows}.parquet"
    if path.is_file():
        return path
    BENCH.mkdir(parents=True, exist_ok=True)
    _log(f"writing {rows:,} rows to {path.relative_to(ROOT)}")
    rng = np.random.default_rng(42)
    tmp = path.with_suffix(".tmp")
    schema = pa.schema([(name, pa.float64()) for name in FEATURES])
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, ROW_GROUP):
            x = _features(rng, min(ROW_GROUP, rows - start))
            writer.write_table(pa.Table.from_arrays(list(x.T), schema=schema))
    os.replace(tmp, path)
    return path


def register_model(home: Path) -> None:
    """Fit the classifier and register it as ``bench@1`` in the store at ``home``."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import GradientBoostingClassifier

    import mlplane
    from mlplane import fluent

    rng = np.random.default_rng(7)
    x = _features(rng, 20_000)
    frame = pd.DataFrame(x, columns=FEATURES)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)
    model.fit(frame, _label(x))
    fluent.set_tracking_uri(str(home))
    mlplane.registry.register("bench", model, input_example=frame[:5])
    fluent.set_tracking_uri(None)


# -- measuring -----------------------------------------------------------------------------------


def _tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _pss(procs: list[Any]) -> int:
    """The processes' proportional set sizes summed (RSS where PSS is not available)."""
    import psutil

    total = 0
    for p in procs:
        try:
            info = p.memory_full_info()
            total += int(getattr(info, "pss", 0) or info.rss)
        except psutil.Error:
            continue
    return total


def _largest_rss(procs: list[Any]) -> int:
    import psutil

    best = 0
    for p in procs:
        try:
            best = max(best, int(p.memory_info().rss))
        except psutil.Error:
            continue
    return best


def run_measured(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv`` to its end: wall seconds, peak memory of its process tree, output.

    The tree's PSS is read once a second (reading it costs ~10 ms per process, which
    sampled more often would take a core from the process measured); each process's RSS,
    which is cheap, every 50 ms.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = {"pss": 0, "rss": 0}
    stop = threading.Event()

    def sample() -> None:
        last = 0.0
        while not stop.is_set():
            procs = _tree(proc.pid)
            peak["rss"] = max(peak["rss"], _largest_rss(procs))
            if time.perf_counter() - last >= 1.0:
                peak["pss"] = max(peak["pss"], _pss(procs))
                last = time.perf_counter()
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return {
        "seconds": seconds,
        "peak_tree_bytes": peak["pss"],
        "largest_process_bytes": peak["rss"],
        "stdout": out.decode(),
    }


def limit_driver(data: str, home: str, out: str) -> dict[str, Any]:
    """The limit, in its own process: read the table, time ``model.predict`` on all of it."""
    import numpy as np
    import pandas as pd

    import mlplane
    from mlplane import fluent

    fluent.set_tracking_uri(home)
    model = mlplane.registry.load("bench@1").model  # the native scikit-learn estimator
    frame = pd.read_parquet(data)
    t0 = time.perf_counter()
    pred = model.predict(frame)
    seconds = time.perf_counter() - t0
    np.save(out, pred)
    return {"rows": len(frame), "seconds": seconds}


# -- the benchmark -------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import pyarrow.parquet as pq

    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    data = ensure_data(rows)
    with tempfile.TemporaryDirectory(prefix="batch-", dir=BENCH) as tmp:
        home = Path(tmp) / "home"
        _log("fitting and registering the model")
        register_model(home)
        env = {**os.environ, "MLPLANE_HOME": str(home), "PYTHONWARNINGS": "ignore"}
        env.pop("MLPLANE_URI", None)

        _log(f"ours: mlplane predict on {rows:,} rows")
        out = Path(tmp) / "preds.parquet"
        argv = [str(Path(sys.executable).with_name("mlplane")), "predict", "bench@1",
                "--input", str(data), "--output", str(out), "--json"]  # fmt: skip
        if args.workers:
            argv += ["--workers", str(args.workers)]
        ours = run_measured(argv, env)
        ours["summary"] = json.loads(ours.pop("stdout"))
        _log(f"the limit: model.predict on {rows:,} rows in memory")
        limit_out = Path(tmp) / "limit.npy"
        limit = run_measured(
            [sys.executable, __file__, "--limit-driver", str(data), str(home), str(limit_out)],
            env,
        )
        limit.update(json.loads(limit["stdout"].strip().splitlines()[-1]))

        same = bool(
            np.array_equal(pq.read_table(out, columns=["prediction"])["prediction"].to_numpy(),
                           np.load(limit_out))
        )  # fmt: skip
    limit.pop("stdout", None)
    return {
        "rows": rows,
        "workers": ours["summary"]["workers"],
        "cpus": os.cpu_count(),
        "ours": {**ours, "rows_per_s": rows / ours["seconds"]},
        "limit": {**limit, "rows_per_s": rows / limit["seconds"]},
        "same_predictions": same,
    }


def render(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    ours, limit = r["ours"], r["limit"]
    ratio = ours["rows_per_s"] / limit["rows_per_s"]
    t = Table(
        title=f"Batch inference, {r['rows']:,} rows x 20 features, GradientBoostingClassifier "
        f"(100 trees, depth 3); {r['workers']} workers on {r['cpus']} CPUs"
    )
    for head in ("", "mlplane predict (end to end)", "model.predict in memory", "ratio", "goal"):
        t.add_column(head, justify="left" if head in ("", "goal") else "right")
    met = "met" if ratio >= GOAL else "not met"
    t.add_row("rows/s", f"{ours['rows_per_s']:,.0f}", f"{limit['rows_per_s']:,.0f}",
              f"{ratio:.0%}", f">= {GOAL:.0%}: {met}")  # fmt: skip
    t.add_row("seconds", f"{ours['seconds']:.1f}", f"{limit['seconds']:.1f} (predict only)",
              "", "")  # fmt: skip
    mem = [x["peak_tree_bytes"] / MIB for x in (ours, limit)]
    t.add_row(
        "peak memory, all processes",
        f"{mem[0]:,.0f} MiB",
        f"{mem[1]:,.0f} MiB",
        f"{mem[0] / max(mem[1], 1):.0%}",
        "bounded",
    )
    largest = [x.get("largest_process_bytes") for x in (ours, limit)]
    sizes = [f"{b / MIB:,.0f} MiB" if b else "-" for b in largest]
    t.add_row("largest process (RSS)", *sizes, "", "")
    t.add_row("same predictions", "yes" if r["same_predictions"] else "NO", "", "", "")
    Console().print(t)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--limit-driver"]:
        sys.stdout.write(json.dumps(limit_driver(*argv[1:4])) + "\n")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 million rows instead of 10 million")
    ap.add_argument("--rows", type=int, help="rows of input (overrides --quick)")
    ap.add_argument("--workers", type=int, help="mlplane predict --workers (default: CPUs)")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    result = bench(args)
    render(result)
    _log(f"wall time {(time.perf_counter() - t0) / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
