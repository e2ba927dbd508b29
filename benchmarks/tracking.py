"""Tracking benchmark: mlplane's server against MLflow's stock server, measured in the same run.

    .venv/bin/python benchmarks/tracking.py [--quick] [--json PATH]

Starts MLflow's server (SQLite, in a cached virtualenv under ``.bench/``) and
ours (SQLite, then PostgreSQL), one at a time so they never share the CPUs,
drives each with its own stock client, and prints the figures side by side
with their ratios. Timings on a shared machine are noisy: read the ratios.
See ``benchmarks/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from _common import (
    BASE_TS,
    SEARCH_FILTER,
    SEARCH_ORDER,
    ensure_mlflow_venv,
    limit_postgres,
    limit_sqlite,
    median,
    mlflow_server,
    mlplane_server,
    pg_database,
    points,
    run_driver,
    run_spec,
    terminate_as_interrupt,
    url_of,
)
from rich.console import Console
from rich.table import Table

import mlplane
from mlplane import Client, Metric

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_BENCH_DB = "mlplane_bench"
console = Console(stderr=True)


@dataclass(frozen=True)
class Sizes:
    ingest_runs: int = 100
    keys: int = 10
    steps: int = 1000
    batch: int = 10_000  # points per log_batch call (ours)
    mlflow_ingest_runs: int = 10  # MLflow is measured on this subset and extrapolated
    mlflow_batch: int = 1000  # MLflow's log_batch limit
    loop_calls: int = 10_000
    mlflow_loop_calls: int = 200
    # 10,000 runs would take MLflow 10-20 minutes to create here (9-20 runs/s): both use 2,000.
    search_runs: int = 10_000
    search_repeats: int = 5
    max_results: int = 1000
    create_threads: int = 8

    @property
    def ingest_points(self) -> int:
        return self.ingest_runs * self.keys * self.steps

    @property
    def limit_shape(self) -> tuple[int, int, int, int]:
        return self.ingest_runs, self.keys, self.steps, self.batch

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            ingest_runs=10,
            mlflow_ingest_runs=1,
            loop_calls=1000,
            mlflow_loop_calls=50,
            search_runs=300,
            search_repeats=3,
            max_results=20,
        )


# -- our measurements ----------------------------------------------------------------------------


def _ingest_runs(c: Client, name: str, sz: Sizes) -> list[tuple[str, list[Metric]]]:
    """Create the ingest runs (untimed) and the points for each, ready to send."""
    eid = c.create_experiment(name)
    warm = c.create_run(eid, run_name="warm-up").info.run_id
    for i in range(8):  # each server worker's first calls are slower
        c.log_batch(warm, metrics=[Metric("warm", 0.0, BASE_TS, i)])
    out = []
    for r in range(sz.ingest_runs):
        rid = c.create_run(eid, run_name=f"ingest-{r:03d}").info.run_id
        out.append((rid, [Metric._make(p) for p in points(r, sz.keys, sz.steps)]))
    return out


def ours_ingest(url: str, sz: Sizes) -> dict[str, Any]:
    """1M points through ``Client.log_batch``, ``sz.batch`` points per call."""
    with Client(url) as c:
        runs = _ingest_runs(c, "ingest-batch", sz)
        t0 = time.perf_counter()
        for rid, pts in runs:
            for i in range(0, len(pts), sz.batch):
                c.log_batch(rid, metrics=pts[i : i + sz.batch])
        dt = time.perf_counter() - t0
    return {"points": sz.ingest_points, "seconds": dt}


def ours_ingest_async(url: str, sz: Sizes) -> dict[str, Any]:
    """The same points through ``log_metric(synchronous=False)`` one by one, then ``flush``."""
    with Client(url) as c:
        runs = _ingest_runs(c, "ingest-async", sz)
        c.flush()
        t0 = time.perf_counter()
        log = c.log_metric
        for rid, pts in runs:
            for key, value, ts, step in pts:
                log(rid, key, value, step, ts, synchronous=False)
        t_enqueue = time.perf_counter() - t0
        dropped = c.flush()
        dt = time.perf_counter() - t0
    if dropped:
        raise RuntimeError(f"the async path dropped {dropped} points")
    return {"points": sz.ingest_points, "seconds": dt, "enqueue_seconds": t_enqueue}


def ours_loop(url: str, sz: Sizes) -> dict[str, Any]:
    """Fluent ``mlplane.log_metric`` in a training loop: the time the loop is blocked."""
    os.environ["MLPLANE_URI"] = url
    mlplane.set_tracking_uri(None)  # rebuild the fluent client from MLPLANE_URI
    mlplane.set_experiment("loop")
    with mlplane.start_run(run_name="loop"):
        for i in range(5):
            mlplane.log_metric("warm", 0.0, step=i)
        mlplane.flush()
        t0 = time.perf_counter()
        for i in range(sz.loop_calls):
            mlplane.log_metric("loss", 1.0 / (i + 1), step=i)
        dt = time.perf_counter() - t0
        t1 = time.perf_counter()
        mlplane.flush()
        flush_s = time.perf_counter() - t1
    mlplane.set_tracking_uri(None)
    return {"calls": sz.loop_calls, "seconds": dt, "flush_seconds": flush_s}


def ours_make_runs(url: str, sz: Sizes) -> dict[str, Any]:
    """The search corpus: one create_run and one log_batch (params + metrics) per run."""
    c = Client(url)
    eid = c.create_experiment("search")

    def one(i: int) -> None:
        name, params, metrics = run_spec(i)
        rid = c.create_run(eid, run_name=name, start_time=BASE_TS + i).info.run_id
        c.log_batch(
            rid, metrics=[Metric(k, v, BASE_TS, 0) for k, v in metrics.items()], params=params
        )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(sz.create_threads) as ex:
        list(ex.map(one, range(sz.search_runs)))
    c.close()
    return {"experiment_id": eid, "runs": sz.search_runs, "seconds": time.perf_counter() - t0}


def ours_search(url: str, eid: str, sz: Sizes, analyze_url: str | None = None) -> dict[str, Any]:
    """Median of ``search_repeats`` searches (all pages). With ``analyze_url`` (PostgreSQL) the
    first search runs before the tables have planner statistics, then ANALYZE runs."""
    out: dict[str, Any] = {}
    with Client(url) as c:

        def search_all() -> list[str]:
            return [
                r.info.run_name
                for r in c.search_all_runs(
                    eid,
                    filter_string=SEARCH_FILTER,
                    order_by=SEARCH_ORDER,
                    max_results=sz.max_results,
                )
            ]

        t0 = time.perf_counter()
        names = search_all()
        out["first_seconds"] = time.perf_counter() - t0
        if analyze_url:
            import psycopg

            with psycopg.connect(analyze_url, autocommit=True) as conn:
                conn.execute("ANALYZE")
            names = search_all()
        times = []
        for _ in range(sz.search_repeats):
            t0 = time.perf_counter()
            search_all()
            times.append(time.perf_counter() - t0)
    return {**out, "times": times, "names": names}


def measure_ours(
    url: str, sz: Sizes, *, loop: bool, analyze_url: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    console.log("  ingest, log_batch")
    out["ingest"] = ours_ingest(url, sz)
    console.log("  ingest, async log_metric + flush")
    out["ingest_async"] = ours_ingest_async(url, sz)
    if loop:
        console.log("  log_metric loop")
        out["loop"] = ours_loop(url, sz)
    console.log(f"  create {sz.search_runs} runs")
    out["make_runs"] = ours_make_runs(url, sz)
    console.log("  search_runs")
    out["search"] = ours_search(url, out["make_runs"]["experiment_id"], sz, analyze_url)
    return out


def measure_mlflow(python: Path, url: str, sz: Sizes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    console.log(f"  ingest ({sz.mlflow_ingest_runs} of {sz.ingest_runs} runs)")
    out["ingest"] = run_driver(
        python,
        "ingest",
        {
            "uri": url,
            "experiment": "ingest",
            "runs": sz.mlflow_ingest_runs,
            "keys": sz.keys,
            "steps": sz.steps,
            "chunk": sz.mlflow_batch,
        },
    )
    console.log(f"  log_metric loop ({sz.mlflow_loop_calls} calls)")
    out["loop"] = run_driver(
        python, "loop", {"uri": url, "experiment": "loop", "calls": sz.mlflow_loop_calls}
    )
    console.log(f"  create {sz.search_runs} runs ({sz.create_threads} threads)")
    out["make_runs"] = run_driver(
        python,
        "make_runs",
        {"uri": url, "experiment": "search", "runs": sz.search_runs, "threads": sz.create_threads},
    )
    console.log("  search_runs")
    out["search"] = run_driver(
        python,
        "search",
        {
            "uri": url,
            "experiment_id": out["make_runs"]["experiment_id"],
            "max_results": sz.max_results,
            "repeats": sz.search_repeats,
        },
    )
    return out


# -- report --------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    ours: float
    mlflow: float | None
    unit: str
    higher_is_better: bool
    goal: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """How many times better ours is (throughput up, time down)."""
        if self.mlflow is None or not self.ours or not self.mlflow:
            return None
        return self.ours / self.mlflow if self.higher_is_better else self.mlflow / self.ours


def _rate(m: dict[str, Any]) -> float:
    return float(m["points"] / m["seconds"])


def figures(r: dict[str, Any], sz: Sizes) -> list[Figure]:
    ml = r["mlflow"]
    ml_rate, ml_search = _rate(ml["ingest"]), median(ml["search"]["times"]) * 1e3
    ml_runs = ml["make_runs"]["runs"] / ml["make_runs"]["seconds"]
    ml_loop = ml["loop"]["seconds"] / ml["loop"]["calls"] * 1e6
    out = []
    for backend, tag in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        if not (o := r.get(backend)):
            continue
        note = (
            f"{sz.ingest_points:,} points; MLflow measured on {ml['ingest']['points']:,} points "
            f"({sz.mlflow_batch:,}/call, its limit), its rate applied to all"
        )
        name = f"ingest, log_batch {sz.batch:,}/call [{tag}]"
        out.append(Figure(name, _rate(o["ingest"]), ml_rate, "pts/s", True, 20, note))
        note = (
            f"one call per point; queueing alone took {o['ingest_async']['enqueue_seconds']:.1f} s "
            "of the total; MLflow reference: its log_batch rate"
        )
        name = f"ingest, log_metric(synchronous=False) + flush [{tag}]"
        out.append(Figure(name, _rate(o["ingest_async"]), ml_rate, "pts/s", True, 20, note))
        if lo := o.get("loop"):
            note = (
                f"ours: {lo['calls']:,} fluent calls, then flush() took "
                f"{lo['flush_seconds'] * 1e3:.0f} ms; MLflow: {ml['loop']['calls']:,} calls"
            )
            ours_loop = lo["seconds"] / lo["calls"] * 1e6
            name = f"log_metric in a training loop, blocked [{tag}]"
            out.append(Figure(name, ours_loop, ml_loop, "µs/call", False, 500, note))
        note = (
            f"{sz.search_runs:,} runs with 3 params and 3 metrics, "
            f"{sz.create_threads} client threads, both sides"
        )
        ours_runs = o["make_runs"]["runs"] / o["make_runs"]["seconds"]
        name = f"create runs (create_run + log_batch) [{tag}]"
        out.append(Figure(name, ours_runs, ml_runs, "runs/s", True, None, note))
        s = o["search"]
        same = "yes" if s["names"] == ml["search"]["names"] else "NO"
        note = (
            f"{sz.search_runs:,} runs, {len(s['names']):,} match; max_results "
            f"{sz.max_results:,}, all pages; same run names in the same order as MLflow: {same}"
        )
        if sz.search_runs < 10_000:
            note += (
                "; not 10,000 runs: MLflow creates only ~20 runs/s here, so both sides use fewer"
            )
        if backend == "postgresql":
            note += (
                "; after ANALYZE (the first search, before the tables had planner statistics, "
                f"took {s['first_seconds'] * 1e3:,.0f} ms)"
            )
        name = f"search_runs, median of {sz.search_repeats} [{tag}]"
        out.append(Figure(name, median(s["times"]) * 1e3, ml_search, "ms", False, 10, note))
    return out


def _fmt(x: float | None, spec: str = ",.1f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{spec}}{suffix}"


def render(figs: list[Figure], r: dict[str, Any]) -> None:
    out = Console(width=max(Console().width, 118))
    t = Table(
        title=f"mlplane vs MLflow {r['mlflow_version']} (its server on SQLite: the reference)"
    )
    for col in ("measurement", "ours", "MLflow", "unit", "ours is", "goal", ""):
        t.add_column(col, justify="left" if col in ("measurement", "unit", "") else "right")
    for i, f in enumerate(figs, 1):
        ok = f.goal is None or f.ratio is None or f.ratio >= f.goal
        verdict = "" if f.goal is None else ("[green]met" if ok else "[red]missed")
        goal = "-" if f.goal is None else f">= {f.goal}x"
        cells = (_fmt(f.ours), _fmt(f.mlflow), f.unit, _fmt(f.ratio, ",.1f", "x"), goal)
        t.add_row(f"{f.name} ({i})", *cells, verdict)
    out.print(t)
    for i, f in enumerate(figs, 1):
        out.print(f"  ({i}) {f.note}")
    lim = Table(title="How close the server path gets to raw inserts of the same rows")
    for col in (
        "database",
        "server, log_batch",
        "server, async",
        "raw (the limit)",
        "log_batch/raw",
    ):
        lim.add_column(col, justify="left" if col == "database" else "right")
    for backend, how in (
        ("sqlite", "SQLite (WAL), executemany"),
        ("postgresql", "PostgreSQL, COPY"),
    ):
        if f"limit_{backend}" in r and backend in r:
            sync, rest = _rate(r[backend]["ingest"]), _rate(r[backend]["ingest_async"])
            raw = _rate(r[f"limit_{backend}"])
            cells = (f"{sync:,.0f} pts/s", f"{rest:,.0f} pts/s", f"{raw:,.0f} pts/s")
            lim.add_row(how, *cells, f"{sync / raw:.0%}")
    out.print(lim)
    goals = [f for f in figs if f.goal is not None and f.ratio is not None]
    missed = [f.name for f in goals if f.ratio < f.goal]  # type: ignore[operator]
    backends = [b for b in ("sqlite", "postgresql") if b in r]
    same = all(r[b]["search"]["names"] == r["mlflow"]["search"]["names"] for b in backends)
    out.print(
        f"Summary: {len(goals) - len(missed)} of {len(goals)} ratio goals met"
        + (f" (missed: {'; '.join(missed)})" if missed else "")
        + f"; search answers identical to MLflow's: {'yes' if same else 'NO'}; "
        f"wall time {r['wall_seconds'] / 60:.1f} min. Timings are noisy here: compare ratios."
    )


# -- main ----------------------------------------------------------------------------------------


def run(sz: Sizes, tmp: Path, *, postgres: bool) -> dict[str, Any]:
    r: dict[str, Any] = {"sizes": asdict(sz)}
    console.log("MLflow virtualenv")
    python = ensure_mlflow_venv(ROOT / ".bench" / "mlflow-venv")
    r["mlflow_version"] = (python.parents[1] / ".installed").read_text().strip()
    console.log(
        f"MLflow {r['mlflow_version']} server on SQLite (stock settings; its start-up is slow)"
    )
    with mlflow_server(python, tmp / "mlflow") as srv:
        r["mlflow"] = measure_mlflow(python, url_of(srv), sz)
    console.log("mlplane server on SQLite")
    with mlplane_server(tmp / "ours-sqlite") as srv:
        r["sqlite"] = measure_ours(url_of(srv), sz, loop=True)
    console.log("limit: raw SQLite inserts")
    r["limit_sqlite"] = limit_sqlite(tmp / "limit.db", *sz.limit_shape)
    if postgres:
        with pg_database(PG_ADMIN_URL, PG_BENCH_DB) as db_url:
            console.log("mlplane server on PostgreSQL")
            with mlplane_server(tmp / "ours-pg", db_url) as srv:
                r["postgresql"] = measure_ours(url_of(srv), sz, loop=False, analyze_url=db_url)
            console.log("limit: raw PostgreSQL COPY")
            r["limit_postgresql"] = limit_postgres(db_url, *sz.limit_shape)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="about 10x smaller, for a smoke run")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--search-runs", type=int, help="size of the search corpus (both sides)")
    ap.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL rows")
    ap.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, databases)"
    )
    args = ap.parse_args(argv)
    sz = Sizes.quick() if args.quick else Sizes()
    if args.search_runs:
        sz = replace(sz, search_runs=args.search_runs)
    tmp = Path(tempfile.mkdtemp(prefix="mlplane-bench-"))
    t0 = time.perf_counter()
    try:
        with terminate_as_interrupt():
            r = run(sz, tmp, postgres=not args.no_postgres)
    except KeyboardInterrupt:
        console.log("interrupted: servers stopped")
        return 130
    finally:
        if args.keep:
            console.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    r["wall_seconds"] = time.perf_counter() - t0
    figs = figures(r, sz)
    render(figs, r)
    if args.json:
        r["figures"] = [{**asdict(f), "ratio": f.ratio} for f in figs]
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
