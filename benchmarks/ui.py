"""Page loads in a real browser with 10,000 runs: mlplane's UI against MLflow's, side by side.

    .venv/bin/python benchmarks/ui.py              # 10,000 runs, 5 loads per page
    .venv/bin/python benchmarks/ui.py --quick      # 1,000 runs, 3 loads per page
    .venv/bin/python benchmarks/ui.py --json .bench/ui.json

Both stores get the same runs (``_ui_data.py``): five params and five metrics each, and a
1,000-step curve on the newest ten. Ours is seeded through the services, MLflow's through
its ``SqlAlchemyStore`` in its own virtualenv (``.bench/mlflow-venv``, made once with
``pip install "mlflow>=3,<4"``: the full package, which ships the UI). One server runs at
a time (two cores), each without authentication on 127.0.0.1.

A load is timed in headless Chromium (Debian's) from the navigation to the moment the
page shows what a person came for: the newest run's name in the run table, the run's
values on a run page, every chart drawn on the compare page (ours: each chart element
marked drawn; MLflow: its plot elements present). Every load uses a fresh browser
context (a cold cache); the median is reported. Goal: each of our pages under 1 s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).parent))

from _common import Server, ensure_mlflow_venv, free_port, url_of
from _ui_data import BASE_TS, curve, run_spec
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
OURS_READY = """([text, charts]) => document.readyState === 'complete'
  && document.body.innerText.includes(text)
  && document.querySelectorAll('[data-chart]').length >= charts
  && [...document.querySelectorAll('[data-chart]')].every(e => e.dataset.rendered === '1')"""
MLFLOW_READY = """([text, charts]) => document.body && document.body.innerText.includes(text)
  && document.querySelectorAll('.js-plotly-plot, canvas, svg.recharts-surface').length >= charts"""


def seed_ours(home: Path, runs: int, curve_runs: int, steps: int) -> dict[str, Any]:
    from mlplane.config import load_settings
    from mlplane.security import local_admin
    from mlplane.services import Services
    from mlplane.tracking.entities import MetricColumns

    me = local_admin("bench")
    svc = Services.from_settings(load_settings(home=home))
    t0 = time.perf_counter()
    eid = svc.tracking.create_experiment(me, "ui-bench")
    ids = []
    for i in range(runs):
        name, params, metrics = run_spec(i)
        ts = BASE_TS + i * 1000
        rid = svc.tracking.create_run(me, eid, run_name=name, start_time=ts).info.run_id
        keys, values = list(metrics), list(metrics.values())
        stamps, stepv = [ts] * len(keys), [0] * len(keys)
        if i >= runs - curve_runs:
            pts = curve(i, steps)
            keys += ["curve"] * len(pts)
            values += [v for _, v in pts]
            stamps += [BASE_TS + s * 1000 for s, _ in pts]
            stepv += [s for s, _ in pts]
        svc.tracking.log_batch(
            me, rid, metrics=MetricColumns(keys, values, stamps, stepv), params=params
        )
        ids.append(rid)
    svc.close()
    return {"experiment_id": eid, "run_ids": ids, "seconds": time.perf_counter() - t0}


def seed_mlflow(python: Path, home: Path, runs: int, curve_runs: int, steps: int) -> dict[str, Any]:
    """MLflow's store with the runs; made once per size and kept under ``.bench`` (its
    own store writes about 20 runs a second here, so 10,000 take 8 minutes)."""
    cache = ROOT / ".bench" / f"ui-mlflow-{runs}-{curve_runs}-{steps}"
    if not (cache / "seeded.json").is_file():
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        out = subprocess.run(
            [str(python), str(Path(__file__).parent / "_ui_mlflow.py"),
             f"sqlite:///{cache / 'mlflow.db'}", (home / "artifacts").as_uri(),
             str(runs), str(curve_runs), str(steps)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"seeding MLflow failed:\n{out.stderr[-3000:]}")
        (cache / "seeded.json").write_text(out.stdout.strip().splitlines()[-1])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(cache / "mlflow.db", home / "mlflow.db")
    return dict(json.loads((cache / "seeded.json").read_text()))


def ours_server(home: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "mlplane.server.app:app_factory", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--workers", "2"]  # fmt: skip
    env = {"MLPLANE_HOME": str(home), "MLPLANE_AUTH": "none", "MLPLANE_RATE_LIMIT_PER_S": "0"}
    return Server("mlplane server", argv, health_url=f"http://127.0.0.1:{port}/healthz",
                  log_path=home / "server.log", env=env, cwd=home)  # fmt: skip


def mlflow_server(python: Path, home: Path) -> Server:
    port = free_port()
    argv = [str(python.parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            "--default-artifact-root", (home / "artifacts").as_uri()]  # fmt: skip
    return Server("mlflow server", argv, health_url=f"http://127.0.0.1:{port}/health",
                  log_path=home / "server.log", cwd=home, start_timeout_s=300)  # fmt: skip


def time_loads(
    browser: Any, base: str, path: str, ready: str, arg: list[Any], repeats: int
) -> dict[str, Any]:
    """Median milliseconds from navigation to ``ready``, each load in a cold context."""
    times = []
    for i in range(repeats + 1):
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        t0 = time.perf_counter()
        page.goto(base + path, wait_until="commit", timeout=120_000)
        page.wait_for_function(ready, arg=arg, timeout=120_000, polling=20)
        elapsed = (time.perf_counter() - t0) * 1000
        ctx.close()
        if i:  # the first load warms the server's caches and the browser process
            times.append(elapsed)
    return {"median_ms": statistics.median(times), "times_ms": times}


def pages(
    side: str, seeded: dict[str, Any], runs: int, curve_runs: int
) -> list[tuple[str, str, str, list[Any]]]:
    """(label, path, ready predicate, its argument) per page, for ``side``."""
    eid, ids = seeded["experiment_id"], seeded["run_ids"]
    newest = run_spec(runs - 1)[0]
    compared = ids[-curve_runs:]
    if side == "ours":
        by_acc = quote("metrics.acc DESC")
        oldest = run_spec(runs - 1 - 49 * 50)[0] if runs > 2500 else run_spec(0)[0]
        deep = 50 if runs > 2500 else 1 + (runs - 1) // 50
        return [
            ("overview", "/ui/", OURS_READY, ["Latest runs", 0]),
            ("experiment list", "/ui/experiments", OURS_READY, ["ui-bench", 0]),
            (f"run table ({runs:,} runs)", f"/ui/experiments/{eid}", OURS_READY, [newest, 0]),
            ("run table sorted by a metric", f"/ui/experiments/{eid}?order={by_acc}",
             OURS_READY, ["run-", 0]),
            (f"run table, page {deep}", f"/ui/experiments/{eid}?page={deep}", OURS_READY,
             [oldest, 0]),
            ("run page (1,000-step curve)", f"/ui/runs/{ids[-1]}", OURS_READY, [newest, 1]),
            (f"compare {curve_runs} runs", "/ui/compare?runs=" + ",".join(compared), OURS_READY,
             [newest, 1]),
        ]  # fmt: skip
    runs_json = json.dumps(compared)
    return [
        ("experiment list", "/#/experiments", MLFLOW_READY, ["ui-bench", 0]),
        (f"run table ({runs:,} runs)", f"/#/experiments/{eid}/runs", MLFLOW_READY, [newest, 0]),
        ("run page (1,000-step curve)", f"/#/experiments/{eid}/runs/{ids[-1]}", MLFLOW_READY,
         ["latency_ms", 0]),
        (f"compare {curve_runs} runs", f"/#/compare-runs?runs={runs_json}&experiments=[\"{eid}\"]",
         MLFLOW_READY, [newest, 1]),
    ]  # fmt: skip


def measure(
    side: str, server: Server, seeded: dict[str, Any], a: argparse.Namespace
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    out: dict[str, Any] = {}
    with server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for label, path, ready, arg in pages(side, seeded, a.runs, a.curve_runs):
            try:
                out[label] = time_loads(browser, url_of(server), path, ready, arg, a.repeats)
            except Exception as exc:  # a page that never got ready: say so, measure the rest
                out[label] = {"median_ms": None, "error": str(exc).splitlines()[0][:200]}
            print(f"  {side:6} {label:32} {out[label].get('median_ms')}", flush=True)
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 runs, 3 loads per page")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--curve-runs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    ap.add_argument("--no-mlflow", action="store_true", help="measure ours only")
    a = ap.parse_args(argv)
    a.runs = a.runs or (1000 if a.quick else 10_000)
    a.repeats = a.repeats or (3 if a.quick else 5)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="mlplane-ui-bench-") as tmp:
        tmp_path = Path(tmp)
        console.print(f"seeding {a.runs:,} runs on each side …")
        ours = seed_ours(tmp_path / "ours", a.runs, a.curve_runs, a.steps)
        result: dict[str, Any] = {
            "runs": a.runs,
            "repeats": a.repeats,
            "seed_ours_s": ours["seconds"],
        }
        result["ours"] = measure("ours", ours_server(tmp_path / "ours"), ours, a)
        if not a.no_mlflow:
            python = ensure_mlflow_venv(ROOT / ".bench" / "mlflow-venv")
            theirs = seed_mlflow(python, tmp_path / "mlflow", a.runs, a.curve_runs, a.steps)
            result["seed_mlflow_s"] = theirs["seconds"]
            result["mlflow_version"] = (python.parent.parent / ".installed").read_text().strip()
            result["mlflow"] = measure(
                "mlflow", mlflow_server(python, tmp_path / "mlflow"), theirs, a
            )
    table = Table(
        title=f"Page loads in headless Chromium, {a.runs:,} runs "
        f"(median of {a.repeats}, cold cache)"
    )
    for col in ("page", "mlplane", "MLflow", "MLflow ÷ mlplane", "goal < 1 s"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for label, ours_fig in result["ours"].items():
        mine = ours_fig.get("median_ms")
        theirs_fig = result.get("mlflow", {}).get(label, {})
        other = theirs_fig.get("median_ms")
        table.add_row(
            label,
            f"{mine:,.0f} ms" if mine else ours_fig.get("error", "—"),
            f"{other:,.0f} ms" if other else theirs_fig.get("error", "—")[:40],
            f"{other / mine:.1f}x" if mine and other else "—",
            "met" if mine and mine < 1000 else "missed",
        )
    console.print(table)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
