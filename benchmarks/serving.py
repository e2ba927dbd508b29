"""Serving: requests/s and latency of one scikit-learn model behind ours, MLflow and BentoML.

Issue 6's benchmark. A ``GradientBoostingClassifier(n_estimators=100, max_depth=3)`` on 20
numeric features, served by:

* **ours**: ``mlplane serve --port P --workers 2 --auth none`` on a deployment made by
  ``mlplane deploy create bench --model bench@1`` in a temporary ``MLPLANE_HOME``; loaded
  on ``POST /invocations`` (the same body as MLflow's) and on the Open Inference Protocol's
  ``POST /v2/models/bench/infer``;
* **mlflow**: stock ``mlflow models serve --env-manager local -w 2`` (MLflow 3, in
  ``.bench/serving-mlflow-venv``) on the model saved by ``mlflow.sklearn.save_model``;
* **bentoml**: a BentoML 1.4 service (``@bentoml.service(workers=2)``, one ``@bentoml.api``)
  in ``.bench/serving-bentoml-venv``;
* **starlette**: the limit, a bare Starlette endpoint on uvicorn (uvloop, httptools, 2
  workers, no access log) that reads the body and returns a constant, in
  ``.bench/serving-starlette-venv``.

Every environment trains the same model from the same seeded data with the same
scikit-learn version; each server's first answer must be a 200 with the predictions our
copy of the model gives, or that server is not loaded. The load generator is ``wrk`` (see
``_serving_wrk.py``), one server at a time: concurrency 1, 16 and 64, requests of 1 row and
of 100 rows, a warm-up before each measurement. The CPU time of every server process is
measured over each run, so a worker left idle shows. Timings on a shared 2-core machine
are noisy, and wrk shares the cores with the server: read the ratios.

    .venv/bin/python benchmarks/serving.py [--quick] [--only mlflow,bentoml,starlette,ours]
                                           [--duration S] [--json PATH] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _serving_peers as peers
import _serving_wrk as wrk
from _common import Server, free_port, terminate_as_interrupt

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
PEERS_FILE = Path(peers.__file__).resolve()
SERVERS = ("mlflow", "bentoml", "starlette", "ours")
CONCURRENCY = (1, 16, 64)
ROWS = (1, 100)
QUICK = [(16, 1), (16, 100)]
REQUEST_SEED = 11


class Skip(Exception):
    """A server that cannot be measured today (not built yet, not installable): say why."""


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- requests and answers ----------------------------------------------------------------------


def dataframe_split(rows: list[list[float]]) -> bytes:
    return json.dumps({"dataframe_split": {"columns": peers.COLUMNS, "data": rows}}).encode()


def v2_infer(rows: list[list[float]]) -> bytes:
    flat = [v for row in rows for v in row]
    tensor = {"name": "input-0", "shape": [len(rows), peers.FEATURES], "datatype": "FP64",
              "data": flat}  # fmt: skip
    return json.dumps({"inputs": [tensor]}).encode()


def bento_body(rows: list[list[float]]) -> bytes:
    return json.dumps({"data": rows}).encode()


def _predictions_key(answer: Any) -> list[Any]:
    return list(answer["predictions"])


def _v2_outputs(answer: Any) -> list[Any]:
    return list(answer["outputs"][0]["data"])


def _plain_list(answer: Any) -> list[Any]:
    return list(answer)


@dataclass
class Endpoint:
    """One URL of a server, with the body it takes and where its answer has the predictions
    (None: a constant answer, the limit)."""

    label: str
    url: str
    body: Callable[[list[list[float]]], bytes]
    predictions: Callable[[Any], list[Any]] | None


def check_answer(ep: Endpoint, rows: list[list[float]], expected: list[int]) -> str:
    """POST one request; raises unless it is a 200 with the expected predictions. Returns a
    note for the report."""
    req = urllib.request.Request(ep.url, data=ep.body(rows), method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    if status != 200:
        raise RuntimeError(f"{ep.label}: {ep.url} answered {status}: {text[:500]}")
    if ep.predictions is None:
        return "constant answer"
    try:
        got = [int(p) for p in ep.predictions(json.loads(text))]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise RuntimeError(f"{ep.label}: no predictions in {text[:500]!r} ({exc!r})") from None
    if got != expected:
        raise RuntimeError(f"{ep.label}: predictions {got[:10]}... differ from {expected[:10]}...")
    return f"{len(got)} predictions, equal to ours"


# -- the servers ---------------------------------------------------------------------------------


@dataclass
class Started:
    server: Server
    title: str
    endpoints: list[Endpoint]
    info: dict[str, Any]


def _sklearn_spec() -> str:
    return f"scikit-learn=={version('scikit-learn')}"


def _venv(name: str, specs: list[str], built: dict[str, Any]) -> Path:
    venv = BENCH / f"serving-{name}-venv"
    python, seconds = peers.ensure_venv(venv, specs, _log)
    built[name] = {"venv": str(venv.relative_to(ROOT)), "specs": specs, "built_s": seconds}
    if seconds is not None:
        _log(f"  {venv.name} built in {seconds:.0f} s")
    return python


def _train(python: Path, flavor: str, out: Path, env: dict[str, str] | None = None) -> Any:
    proc = subprocess.run([str(python), str(PEERS_FILE), "train", flavor, str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"training the model ({flavor}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _quiet_env() -> dict[str, str]:
    # No usage reports from the peers (nothing outside loopback is reachable anyway, and a
    # report that waits for a timeout would be measured).
    return {"DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
            "BENTOML_DO_NOT_TRACK": "True"}  # fmt: skip


@contextlib.contextmanager
def start_mlflow(tmp: Path, built: dict[str, Any]) -> Iterator[Started]:
    python = _venv("mlflow", [*peers.MLFLOW_SPECS, _sklearn_spec()], built)
    venv = python.parent.parent
    model = tmp / "mlflow-model"
    _train(python, "mlflow", model)
    port = free_port()
    argv = [str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(model), "--env-manager",
            "local", "-w", "2", "-p", str(port), "-h", "127.0.0.1"]  # fmt: skip
    # mlflow runs `uvicorn` by name: its own venv's must come first on the PATH.
    env = {**_quiet_env(), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    base = f"http://127.0.0.1:{port}"
    server = Server("mlflow models serve", argv, health_url=f"{base}/ping",
                    log_path=tmp / "mlflow.log", env=env, cwd=tmp, start_timeout_s=300)  # fmt: skip
    with server:
        v = peers.installed(venv, "mlflow")
        yield Started(
            server,
            f"MLflow {v}, mlflow models serve -w 2",
            [Endpoint("mlflow", f"{base}/invocations", dataframe_split, _predictions_key)],
            {"mlflow": v, "uvicorn": peers.installed(venv, "uvicorn")},
        )


@contextlib.contextmanager
def start_bentoml(tmp: Path, built: dict[str, Any]) -> Iterator[Started]:
    python = _venv("bentoml", [*peers.BENTOML_SPECS, _sklearn_spec()], built)
    venv = python.parent.parent
    model = tmp / "bento-model.joblib"
    _train(python, "joblib", model)
    folder = peers.write_bento_service(tmp / "bento", model)
    port = free_port()
    argv = [str(venv / "bin" / "bentoml"), "serve", "service:GBC", "--host", "127.0.0.1",
            "--port", str(port), "--working-dir", str(folder)]  # fmt: skip
    env = {**_quiet_env(), "BENTOML_HOME": str(tmp / "bentoml-home"),
           "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    log = tmp / "bentoml.log"
    server = Server("bentoml serve", argv, health_url=f"{base}/readyz", log_path=log, env=env,
                    cwd=folder, start_timeout_s=300)  # fmt: skip
    with server:
        v = peers.installed(venv, "bentoml")
        yield Started(
            server,
            f"BentoML {v}, @bentoml.service(workers=2)",
            [Endpoint("bentoml", f"{base}/predict", bento_body, _plain_list)],
            {"bentoml": v},
        )


@contextlib.contextmanager
def start_starlette(tmp: Path, built: dict[str, Any]) -> Iterator[Started]:
    python = _venv("starlette", list(peers.STARLETTE_SPECS), built)
    venv = python.parent.parent
    folder = peers.write_starlette_app(tmp / "starlette")
    port = free_port()
    argv = [str(python), "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    server = Server("starlette", argv, health_url=f"{base}/ping", log_path=tmp / "starlette.log",
                    cwd=folder, start_timeout_s=120)  # fmt: skip
    with server:
        s, u = peers.installed(venv, "starlette"), peers.installed(venv, "uvicorn")
        yield Started(
            server,
            f"Starlette {s} on uvicorn {u} (uvloop, httptools), 2 workers, constant answer",
            [Endpoint("starlette", f"{base}/invocations", dataframe_split, None)],
            {"starlette": s, "uvicorn": u},
        )


def _mlplane(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    exe = ROOT / ".venv" / "bin" / "mlplane"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL)  # fmt: skip


@contextlib.contextmanager
def start_ours(tmp: Path, built: dict[str, Any]) -> Iterator[Started]:
    home = tmp / "mlplane-home"
    home.mkdir()
    env = {"MLPLANE_HOME": str(home), "MLPLANE_AUTH": "none"}
    for var in ("MLPLANE_URI", "MLPLANE_TRACKING_URI", "MLPLANE_TOKEN"):
        os.environ.pop(var, None)  # the benchmark's own store only
    for cmd in (("deploy", "--help"), ("serve", "--help")):
        if _mlplane(*cmd, env=env, timeout=120).returncode != 0:
            raise Skip(f"`mlplane {' '.join(cmd[:-1])}` is not a command yet")
    serve_help = _mlplane("serve", "--help", env=env).stdout
    _train(ROOT / ".venv" / "bin" / "python", "mlplane", home / "unused", env=env)
    made = _mlplane("deploy", "create", "bench", "--model", "bench@1", env=env)
    if made.returncode != 0:
        raise RuntimeError(
            f"mlplane deploy create failed:\n{made.stdout[-1500:]}{made.stderr[-1500:]}"
        )
    port = free_port()
    argv = [str(ROOT / ".venv" / "bin" / "mlplane"), "serve", "--port", str(port),
            "--workers", "2", "--auth", "none"]  # fmt: skip
    if "--host" in serve_help:
        argv += ["--host", "127.0.0.1"]
    base = f"http://127.0.0.1:{port}"
    log = tmp / "mlplane.log"
    server = Server("mlplane serve", argv, health_url=f"{base}/v2/health/ready", log_path=log,
                    env=env, cwd=tmp, start_timeout_s=180)  # fmt: skip
    with server:
        yield Started(
            server,
            "mlplane serve --workers 2",
            [
                Endpoint("ours", f"{base}/invocations", dataframe_split, _predictions_key),
                Endpoint("ours, v2", f"{base}/v2/models/bench/infer", v2_infer, _v2_outputs),
            ],
            {"mlplane": version("mlplane")},
        )


STARTERS: dict[
    str, Callable[[Path, dict[str, Any]], contextlib.AbstractContextManager[Started]]
] = {
    "mlflow": start_mlflow,
    "bentoml": start_bentoml,
    "starlette": start_starlette,
    "ours": start_ours,
}

# -- measuring -----------------------------------------------------------------------------------


def measure(
    started: Started,
    scenarios: list[tuple[int, int]],
    data: dict[int, list[list[float]]],
    expected: dict[int, list[int]],
    warm_s: float,
    duration_s: float,
) -> dict[str, Any]:
    """Every endpoint of a started server, every scenario: warm-up, then the measured run."""
    out: dict[str, Any] = {}
    assert started.server.proc is not None
    for ep in started.endpoints:
        checks = {rows: check_answer(ep, data[rows], expected[rows]) for rows in ROWS}
        _log(f"  {ep.label}: answers checked ({checks[ROWS[-1]]})")
        runs: dict[str, Any] = {"check": checks}
        for c, rows in scenarios:
            body = ep.body(data[rows])
            wrk.run_wrk(ep.url, body, connections=c, duration_s=warm_s)
            cpu = wrk.CPUMeter(started.server.proc.pid)
            cpu.start()
            load = wrk.run_wrk(ep.url, body, connections=c, duration_s=duration_s)
            used = cpu.stop()
            # Whatever else ran on the machine meanwhile (it is shared), in cores.
            others = (
                used["machine_busy_cores"] - (used["total_cpu_s"] + load.wrk_cpu_s) / used["wall_s"]
            )
            r = {**load.as_dict(), "body_bytes": len(body), "server_cpu": used,
                 "other_load_cores": max(0.0, others)}  # fmt: skip
            runs[f"c{c}-r{rows}"] = r
            busy = ", ".join(f"{u['core_share']:.0%}" for u in used["processes"][:3])
            _log(f"  {ep.label} c={c:<3} rows={rows:<4} {load.rps:9,.0f} req/s  "
                 f"p99 {load.percentiles_ms['99']:8.1f} ms  non-2xx {load.non_2xx}  "
                 f"server processes {busy}  wrk {load.wrk_cpu_s / load.seconds:.0%}  "
                 f"others {r['other_load_cores']:.2f} cores")  # fmt: skip
        out[ep.label] = runs
    return out


# -- the report ------------------------------------------------------------------------------------

# (name, peer, scenario, what, goal); what: "rps" is ours/peer req/s, "p99" ours/peer p99.
GOALS = [
    ("ours vs MLflow, req/s", "mlflow", "c16-r1", "rps", 10.0),
    ("ours vs MLflow, p99", "mlflow", "c16-r1", "p99", 0.25),
    ("ours vs MLflow, req/s, 100 rows", "mlflow", "c16-r100", "rps", 10.0),
    ("ours vs MLflow, p99, 100 rows", "mlflow", "c16-r100", "p99", 0.25),
    ("ours vs BentoML, req/s", "bentoml", "c16-r1", "rps", 3.0),
    ("ours vs BentoML, req/s, 100 rows", "bentoml", "c16-r100", "rps", 3.0),
    ("ours / the limit, req/s", "starlette", "c16-r1", "rps", 0.25),
]


def _ratio(
    results: dict[str, Any], peer: str, key: str, what: str, ours: str = "ours"
) -> float | None:
    mine, theirs = results.get(ours, {}).get(key), results.get(peer, {}).get(key)
    if not mine or not theirs:
        return None
    if what == "p99":
        return float(mine["percentiles_ms"]["99"] / max(theirs["percentiles_ms"]["99"], 1e-9))
    return float(mine["rps"] / max(theirs["rps"], 1e-9))


def goal_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, peer, key, what, goal in GOALS:
        value = _ratio(results, peer, key, what)
        met = None if value is None else (value <= goal if what == "p99" else value >= goal)
        rows.append({"goal": name, "scenario": key, "value": value, "target": goal,
                     "lower_is_better": what == "p99", "percent": peer == "starlette",
                     "met": met})  # fmt: skip
    return rows


NO_FIGURE = "\u2013"  # an en dash


def _fmt_ratio(x: float | None, unit: str = "x") -> str:
    return NO_FIGURE if x is None else (f"{x:.0%}" if unit == "%" else f"{x:.2f}{unit}")


def render(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console(width=max(Console().width, 170))
    results: dict[str, Any] = report["results"]
    for c, rows in report["scenarios"]:
        key = f"c{c}-r{rows}"
        t = Table(title=f"concurrency {c}, {rows} row{'s' if rows > 1 else ''} per request")
        for head in ("server", "req/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx", "socket errors",
                     "server CPU by process (share of a core)", "wrk CPU",
                     "other load (cores)"):  # fmt: skip
            t.add_column(head, justify="left" if head.startswith(("server", "socket")) else "right")
        for label, runs in results.items():
            r = runs.get(key)
            if r is None:
                continue
            p = r["percentiles_ms"]
            procs = r["server_cpu"]["processes"]
            share = " ".join(f"{u['core_share']:.0%}" for u in procs if u["core_share"] >= 0.005)
            if r["server_cpu"]["balance"] < 0.25 and c > 1:
                share += " [red](one worker idle?)[/]"
            errs = sum(r["socket_errors"].values())
            wrk_share = r["wrk_cpu_s"] / r["seconds"]
            t.add_row(label, f"{r['rps']:,.0f}", *(f"{p[q]:.2f}" for q in ("50", "90", "99")),
                      str(r["non_2xx"]), str(errs), share or NO_FIGURE, f"{wrk_share:.0%}",
                      f"{r['other_load_cores']:.2f}")  # fmt: skip
        out.print(t)
        measured = [label for label in ("ours", "ours, v2") if key in results.get(label, {})]
        for ours in measured or ["ours"]:
            ratios = [
                (f"{ours}/mlflow req/s", _fmt_ratio(_ratio(results, "mlflow", key, "rps", ours))),
                (f"{ours} p99/mlflow p99", _fmt_ratio(_ratio(results, "mlflow", key, "p99", ours))),
                (f"{ours}/bentoml req/s", _fmt_ratio(_ratio(results, "bentoml", key, "rps", ours))),
                (f"{ours}/starlette req/s",
                 _fmt_ratio(_ratio(results, "starlette", key, "rps", ours), "%")),
            ]  # fmt: skip
            out.print("  " + "   ".join(f"{name}: {v}" for name, v in ratios))
        out.print()

    t = Table(title="Goals (issue 6)")
    for head in ("goal", "scenario", "ours is", "goal", ""):
        t.add_column(head)
    for g in report["goals"]:
        unit = "%" if g["percent"] else "x"
        target = f"{'≤' if g['lower_is_better'] else '≥'} {_fmt_ratio(g['target'], unit)}"
        verdict = {None: "no figure", True: "[green]met[/]", False: "[red]not met[/]"}[g["met"]]
        t.add_row(g["goal"], g["scenario"], _fmt_ratio(g["value"], unit), target, verdict)
    out.print(t)
    for name, why in report["skipped"].items():
        out.print(f"[yellow]{name}: skipped[/]: {escape(why)}")
    for b in report["venvs"].values():
        built = "already built" if b["built_s"] is None else f"built in {b['built_s']:.0f} s"
        out.print(escape(f"{b['venv']}: {' '.join(b['specs'])} ({built})"))
    out.print(f"load generator: wrk {report['wrk']}, {report['warm_s']:g} s warm-up + "
              f"{report['duration_s']:g} s per run, -t min(2, c), closed loop")  # fmt: skip


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(SERVERS),
                    help=f"comma-separated servers to measure, of {','.join(SERVERS)}")  # fmt: skip
    ap.add_argument("--quick", action="store_true",
                    help="concurrency 16 only, 1 and 100 rows, 5 s runs")  # fmt: skip
    ap.add_argument("--duration", type=float, help="seconds per measured run (15; 5 with --quick)")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, models)")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SERVERS))
    if unknown:
        ap.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    wrk_v = wrk.wrk_version()
    if wrk_v is None:
        print(wrk.MISSING, file=sys.stderr)
        return 2

    scenarios = QUICK if args.quick else [(c, r) for r in ROWS for c in CONCURRENCY]
    duration = args.duration or (5.0 if args.quick else 15.0)
    warm = 2.0 if args.quick else 5.0
    rows100 = peers.features(max(ROWS), REQUEST_SEED)
    data = {r: rows100[:r] for r in ROWS}
    _log("training our copy of the model, for the reference predictions")
    model, _ = peers.make_model(frame=False)
    import numpy as np

    expected = {r: [int(p) for p in model.predict(np.asarray(data[r]))] for r in ROWS}

    report: dict[str, Any] = {
        "wrk": wrk_v, "scenarios": scenarios, "duration_s": duration, "warm_s": warm,
        "quick": args.quick, "cpus": os.cpu_count(), "python": sys.version.split()[0],
        "sklearn": version("scikit-learn"), "servers": {}, "results": {}, "skipped": {},
        "venvs": {},
    }  # fmt: skip
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="mlplane-serving-bench-"))
    try:
        with terminate_as_interrupt():
            for name in [s for s in SERVERS if s in only]:
                _log(f"{name}: starting")
                started_at = time.perf_counter()
                try:
                    with STARTERS[name](tmp, report["venvs"]) as started:
                        up_s = time.perf_counter() - started_at
                        _log(f"{name}: {started.title}, up after {up_s:.0f} s")
                        report["servers"][name] = {"title": started.title, **started.info,
                                                   "start_s": up_s}  # fmt: skip
                        report["results"].update(
                            measure(started, scenarios, data, expected, warm, duration)
                        )
                except Skip as exc:
                    _log(f"{name}: skipped: {exc}")
                    report["skipped"][name] = str(exc)
                except RuntimeError as exc:
                    _log(f"{name}: FAILED: {exc}")
                    report["skipped"][name] = f"failed: {str(exc)[:2000]}"
    finally:
        if args.keep:
            _log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["goals"] = goal_rows(report["results"])
    report["wall_s"] = time.perf_counter() - t0
    render(report)
    _log(f"wall time {report['wall_s'] / 60:.1f} min")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
