"""MLflow compatibility benchmark: one stock MLflow client script against both servers.

    .venv/bin/python benchmarks/mlflow_compat.py [--quick] [--runs N] [--json PATH] [--keep]

The same script (``_mlflow_compat_client.py``, MLflow's own ``MlflowClient`` in
MLflow's cached virtualenv under ``.bench/``) runs unchanged first against
MLflow's server (SQLite, proxied artifacts, its default command) and then against
``mlplane server`` (embedded SQLite). Only the server differs. Each side runs
once; the figures are printed side by side with their ratios, after the data
each server returns has been checked against the other's and against what was
logged. See ``benchmarks/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from _common import (
    Server,
    ensure_mlflow_venv,
    free_port,
    mlplane_server,
    terminate_as_interrupt,
    url_of,
)
from _mlflow_compat_client import expected_matches
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
CLIENT = Path(__file__).resolve().parent / "_mlflow_compat_client.py"
MLFLOW_BATCH_LIMIT = 1000  # metrics per log_batch call, MLflow's limit
console = Console(stderr=True)


@dataclass(frozen=True)
class Sizes:
    runs: int = 200
    params: int = 10
    keys: int = 50  # metrics per run, each logged at every step through log_batch
    steps: int = 200
    batch: int = MLFLOW_BATCH_LIMIT
    singles: int = 20  # single log_metric calls per run
    artifact_mb: int = 50
    max_results: int = 1000  # search_runs page size; all runs fit in one page
    search_repeats: int = 5
    check_page: int = 37  # page size of the read-back count, so paging is exercised

    @property
    def batch_points(self) -> int:
        return self.runs * self.keys * self.steps

    @classmethod
    def quick(cls) -> Sizes:
        return cls(runs=20, keys=10, artifact_mb=5, search_repeats=3, check_page=7)


# -- running the client against one server -------------------------------------------------------


def mlflow_proxy_server(python: Path, home: Path) -> Server:
    """MLflow's default server command (uvicorn, 4 workers) on SQLite, proxying artifacts."""
    port = free_port()
    home.mkdir(parents=True)
    argv = [str(python.parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination", str(home / "artifacts")]  # fmt: skip
    return Server("mlflow server", argv, health_url=f"http://127.0.0.1:{port}/health",
                  log_path=home / "server.log", cwd=home, start_timeout_s=300)  # fmt: skip


def ours_server(home: Path) -> Server:
    """``mlplane server`` as the other benchmarks start it, auth disabled on loopback and the
    rate limit off (as in ``ui.py``): MLflow's server has none, and the single ``log_metric``
    calls (a few ms each) outrun the default 200 requests a second per address."""
    srv = mlplane_server(home)
    srv.env = {**(srv.env or {}), "MLPLANE_AUTH": "none", "MLPLANE_RATE_LIMIT_PER_S": "0"}
    return srv


def write_artifact(path: Path, mb: int) -> None:
    """``mb`` MB of seeded random bytes (incompressible), the same on both sides."""
    rng = random.Random(20261130)
    with path.open("wb") as f:
        for _ in range(mb):
            f.write(rng.randbytes(1_000_000))


def run_client(python: Path, url: str, sz: Sizes, artifact: Path) -> dict[str, Any]:
    args = {
        "uri": url,
        "experiment": "mlflow-compat",
        **{k: v for k, v in asdict(sz).items() if k != "artifact_mb"},
        "artifact": str(artifact),
    }
    env = {
        **os.environ,
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "600",
        # A 5xx must fail loudly, not be retried seven times with backoff (same on both sides).
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "PYTHONWARNINGS": "ignore",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(python), str(CLIENT), json.dumps(args)],
        capture_output=True, text=True, timeout=3600, env=env,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the client crashed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    out["client_wall_seconds"] = wall
    return out


def measure(name: str, server: Server, python: Path, sz: Sizes, artifact: Path) -> dict[str, Any]:
    console.log(f"{name}: starting the server")
    t0 = time.perf_counter()
    with server as srv:
        console.log(f"{name}: up in {time.perf_counter() - t0:.0f} s; running the client")
        out = run_client(python, url_of(srv), sz, artifact)
    if err := out.get("error"):
        tail = server.log_path.read_text(errors="replace")[-4000:]
        console.log(f"[red]{name}: {err['part']}: {err['call']} failed: {err['message']}")
        console.log(f"{name} server log, last lines:\n{tail}")
        out["server_log_tail"] = tail
    else:
        console.log(f"{name}: done in {out['end_to_end_seconds']:.1f} s (timed parts)")
    return out


# -- correctness ---------------------------------------------------------------------------------


def check(r: dict[str, Any], sz: Sizes, artifact_sha: str) -> list[tuple[str, str, str, str]]:
    """(check, want, MLflow, ours) for every read-back that differs; empty when all agree."""
    want = {
        "run_count": sz.runs,
        "history_length": sz.steps,
        "history_values_match": True,
        "single_history_length": sz.singles,
        "params": sz.params,
        "params_match": True,
        "latest_metrics": sz.keys + 1,
        "latest_values_match": True,
        "artifact_listed_size": sz.artifact_mb * 1_000_000,
        "artifact_downloaded_size": sz.artifact_mb * 1_000_000,
        "artifact_sha256": artifact_sha,
    }
    bad = []
    for key, expected in want.items():
        got = [r[side]["checks"].get(key) for side in ("mlflow", "ours")]
        if any(g != expected for g in got):
            bad.append((key, str(expected), str(got[0]), str(got[1])))
    names = sorted(expected_matches(sz.runs, sz.steps))
    found = [sorted(r[side]["search"]["names"]) for side in ("mlflow", "ours")]
    if any(f != names for f in found):
        ml, ours = (f"{len(f)} runs" + ("" if f == names else ", not those") for f in found)
        bad.append(("search_runs matches", f"{len(names)} runs", ml, ours))
    return bad


# -- report --------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    ours: float
    mlflow: float
    unit: str
    higher_is_better: bool
    goal: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """How many times better ours is (throughput up, time down)."""
        if not self.ours or not self.mlflow:
            return None
        return self.ours / self.mlflow if self.higher_is_better else self.mlflow / self.ours


def figures(r: dict[str, Any], sz: Sizes) -> list[Figure]:
    o, m = r["ours"], r["mlflow"]
    to, tm = o["timings"], m["timings"]
    singles = sz.runs * sz.singles
    mb = sz.artifact_mb
    calls = o["log_batch_calls"]

    def each(t: dict[str, float], part: str, n: int, scale: float = 1e3) -> float:
        return t[part] / n * scale

    return [
        Figure(
            f"create_run + {sz.params} params, {sz.runs} runs",
            to["create_runs"],
            tm["create_runs"],
            "s",
            False,
            note=f"create_experiment, then create_run and one log_batch(params=...) per run; "
            f"per run: ours {each(to, 'create_runs', sz.runs):.1f} ms, "
            f"MLflow {each(tm, 'create_runs', sz.runs):.1f} ms",
        ),
        Figure(
            "log_batch",
            sz.batch_points / to["log_batch"],
            sz.batch_points / tm["log_batch"],
            "metrics/s",
            True,
            note=f"{sz.batch_points:,} points ({sz.runs} runs x {sz.keys} metrics x {sz.steps} "
            f"steps) in {calls:,} calls of {sz.batch:,} (MLflow's limit); "
            f"ours {to['log_batch']:.1f} s, MLflow {tm['log_batch']:.1f} s",
        ),
        Figure(
            "single log_metric",
            each(to, "log_metric", singles),
            each(tm, "log_metric", singles),
            "ms/call",
            False,
            note=f"{singles:,} blocking calls ({sz.singles} per run); "
            f"ours {to['log_metric']:.1f} s, MLflow {tm['log_metric']:.1f} s",
        ),
        Figure(
            f"log_artifact, {mb} MB",
            to["log_artifact"],
            tm["log_artifact"],
            "s",
            False,
            note=f"one file, proxied through the server; ours {mb / to['log_artifact']:.0f} MB/s, "
            f"MLflow {mb / tm['log_artifact']:.0f} MB/s; download (read-back check): "
            f"ours {o['checks']['artifact_download_seconds']:.2f} s, "
            f"MLflow {m['checks']['artifact_download_seconds']:.2f} s",
        ),
        Figure(
            f"search_runs, median of {sz.search_repeats}",
            o["search"]["median_seconds"] * 1e3,
            m["search"]["median_seconds"] * 1e3,
            "ms",
            False,
            10,
            note=f'"metrics.m0 > 0.5" over {sz.runs} runs, {len(o["search"]["names"])} match, '
            f"max_results {sz.max_results:,}, {o['search']['pages']} page(s); the first search "
            f"(in end to end): ours {o['search']['times'][0] * 1e3:.0f} ms, "
            f"MLflow {m['search']['times'][0] * 1e3:.0f} ms",
        ),
        Figure(
            f"search_runs, server side, median of {sz.search_repeats}",
            o["search"]["raw_median_seconds"] * 1e3,
            m["search"]["raw_median_seconds"] * 1e3,
            "ms",
            False,
            note="the same search as a plain HTTP POST on one kept-alive connection (after an "
            "untimed one, so no worker's first search is timed), the JSON answer read but not "
            "parsed into MLflow objects: what the server costs. The stock client then parses the "
            "answer (JSON, protobuf, Run objects): ours "
            f"{o['search']['parse_median_seconds'] * 1e3:.1f} ms, MLflow's "
            f"{m['search']['parse_median_seconds'] * 1e3:.1f} ms; that parsing alone caps "
            "the ratio of (5) at "
            f"{m['search']['median_seconds'] / o['search']['parse_median_seconds']:.1f}x "
            "for a server that took no time at all; row (7) measures that bound",
        ),
        Figure(
            f"search_runs ceiling: a no-work server, median of {sz.search_repeats}",
            o["search"]["floor_median_seconds"] * 1e3,
            m["search"]["median_seconds"] * 1e3,
            "ms",
            False,
            note="ours: the stock client's search_runs against a server that does no work, "
            f"answering with the exact bytes of our answer ({o['search']['answer_bytes']:,} B, "
            "from memory, a few lines of asyncio in their own process): the client's own "
            "cost. MLflow: its stock-client search of (5). Their ratio is the best any server "
            "answering these bytes can reach through the stock client. With MLflow's answer's "
            f"bytes ({m['search']['answer_bytes']:,} B) the same floor is "
            f"{m['search']['floor_median_seconds'] * 1e3:.1f} ms, a ceiling of "
            f"{m['search']['median_seconds'] / m['search']['floor_median_seconds']:.1f}x",
        ),
        Figure(
            "end to end",
            o["end_to_end_seconds"],
            m["end_to_end_seconds"],
            "s",
            False,
            3,
            note="all the timed parts above, one after the other (the first search only); "
            f"whole client process incl. warm-up and read-back: ours "
            f"{o['client_wall_seconds']:.0f} s, MLflow {m['client_wall_seconds']:.0f} s",
        ),
    ]


def _fmt(x: float | None, suffix: str = "") -> str:
    if x is None:
        return "-"
    spec = ",.0f" if abs(x) >= 1000 else (",.1f" if abs(x) >= 10 else ",.2f")
    return f"{x:{spec}}{suffix}"


def render(figs: list[Figure], r: dict[str, Any], bad: list[tuple[str, str, str, str]]) -> None:
    out = Console(width=max(Console().width, 118))
    t = Table(title=f"One stock MLflow {r['mlflow_version']} client script: mlplane vs MLflow")
    for col in ("measurement", "ours", "MLflow", "unit", "ours is", "goal", ""):
        t.add_column(col, justify="left" if col in ("measurement", "unit", "") else "right")
    for i, f in enumerate(figs, 1):
        ok = f.goal is None or f.ratio is None or f.ratio >= f.goal
        verdict = "" if f.goal is None else ("[green]met" if ok else "[red]missed")
        if bad:
            verdict = "[red]void"
        goal = "-" if f.goal is None else f">= {f.goal}x"
        cells = (_fmt(f.ours), _fmt(f.mlflow), f.unit, _fmt(f.ratio, "x"), goal)
        t.add_row(f"{f.name} ({i})", *cells, verdict)
    out.print(t)
    for i, f in enumerate(figs, 1):
        out.print(f"  ({i}) {f.note}")
    c = r["ours"]["checks"]
    out.print(
        f"Read back by the same client from each server: {c.get('run_count')} runs (pages of "
        f"{r['sizes']['check_page']}), m0 history of {c.get('history_length')} points equal to "
        f"what was logged, the last run's {c.get('params')} params and {c.get('latest_metrics')} "
        "latest metrics with their values, the artifact's size and SHA-256, the runs the "
        "search matched: "
        + ("[green]identical on both servers" if not bad else "[red]DIFFERENT (see below)")
    )
    if bad:
        bt = Table(title="[red]Read-back checks that failed: the figures above are void")
        for col in ("check", "want", "MLflow", "ours"):
            bt.add_column(col)
        for row in bad:
            bt.add_row(*row)
        out.print(bt)
    goals = [f for f in figs if f.goal is not None and f.ratio is not None]
    missed = [f.name for f in goals if f.ratio < f.goal]  # type: ignore[operator]
    if bad:
        out.print("[red]Summary: the servers' answers differ, so no goal counts as met.")
        return
    out.print(
        f"Summary: {len(goals) - len(missed)} of {len(goals)} ratio goals met"
        + (f" (missed: {'; '.join(missed)})" if missed else "")
        + f"; wall time {r['wall_seconds'] / 60:.1f} min. Timings are noisy here: "
        "compare ratios."
    )


# -- main ----------------------------------------------------------------------------------------


def run(sz: Sizes, tmp: Path) -> dict[str, Any]:
    r: dict[str, Any] = {"sizes": asdict(sz)}
    console.log("MLflow virtualenv")
    python = ensure_mlflow_venv(ROOT / ".bench" / "mlflow-venv")
    r["mlflow_version"] = (python.parents[1] / ".installed").read_text().strip()
    artifact = tmp / f"artifact-{sz.artifact_mb}mb.bin"
    write_artifact(artifact, sz.artifact_mb)
    r["artifact_sha256"] = _sha256(artifact)
    r["mlflow"] = measure(
        f"MLflow {r['mlflow_version']}", mlflow_proxy_server(python, tmp / "mlflow"), python, sz,
        artifact,
    )  # fmt: skip
    r["ours"] = measure("mlplane", ours_server(tmp / "ours"), python, sz, artifact)
    return r


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 runs, 10 metrics, 5 MB: a smoke run")
    ap.add_argument(
        "--runs", type=int, help="number of runs (every per-run size unchanged); default 200"
    )
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, databases)"
    )
    args = ap.parse_args(argv)
    sz = Sizes.quick() if args.quick else Sizes()
    if args.runs:
        sz = replace(sz, runs=args.runs)
    tmp = Path(tempfile.mkdtemp(prefix="mlplane-compat-"))
    t0 = time.perf_counter()
    try:
        with terminate_as_interrupt():
            r = run(sz, tmp)
    except KeyboardInterrupt:
        console.log("interrupted: servers stopped")
        return 130
    finally:
        if args.keep:
            console.log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    r["wall_seconds"] = time.perf_counter() - t0
    failed = [side for side in ("mlflow", "ours") if "error" in r[side]]
    if failed:
        for side in failed:
            e = r[side]["error"]
            console.print(f"[red]{side}: {e['part']}: {e['call']} failed: {e['message']}")
        if args.json:
            args.json.write_text(json.dumps(r, indent=2) + "\n")
        return 1
    bad = check(r, sz, r["artifact_sha256"])
    figs = figures(r, sz)
    render(figs, r, bad)
    if args.json:
        r["checks_failed"] = [
            dict(zip(("check", "want", "mlflow", "ours"), b, strict=True)) for b in bad
        ]
        r["figures"] = [{**asdict(f), "ratio": f.ratio} for f in figs]
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    if bad:
        console.print("[red]The servers' answers differ: the benchmark failed.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
