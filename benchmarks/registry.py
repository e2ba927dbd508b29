"""Registry benchmarks, one section each, measured in the same run as the tools they compare to.

    .venv/bin/python benchmarks/registry.py [--only scan|register] [--quick] [--json PATH]

Sections:

* ``register``: register + load + first predict of a scikit-learn pipeline against our
  server, vs MLflow's ``log_model`` + ``load_model`` + predict against its stock server
  (MLflow in ``.bench/mlflow-venv``); see ``_registry_mlflow.py``.

* ``scan``: the static model scanner (``mlplane.registry.scan``) against
  picklescan and modelscan. Both are installed in their own virtualenv under
  ``.bench/scan-venv``; the corpus is written once under
  ``.bench/scan-corpus/``: the malicious files of the tests
  (``tests/registry/_payloads.py``), small benign models, and a few large
  benign ones for throughput. Every tool scans every file through its Python
  API, in-process (no interpreter start-up counted), best of a few runs.

Only the standard library is imported at module level: the tools' virtualenv
runs this same file as their driver (``python registry.py --scan-driver ...``).
Timings on a shared machine are noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench"
MIB = 1 << 20

# -- scan: the tools' side (runs in .bench/scan-venv) ----------------------------------------------

SCAN_SPECS = ["picklescan>=0.0.30,<2", "modelscan>=0.8,<1"]
SCAN_CORPUS_VERSION = "3"  # bump when the corpus changes: it is built again


def _picklescan_one(path: str) -> str:
    from picklescan.scanner import scan_file_path

    r = scan_file_path(path)
    if r.issues_count:
        dangerous = sorted(
            {f"{g.module}.{g.name}" for g in r.globals if g.safety.name == "Dangerous"}
        )
        return "dangerous: " + ", ".join(dangerous)[:60]
    if r.scan_err:
        return "error"
    if r.suspicious_count:
        return "suspicious"
    return "clean" if r.scanned_files else "skipped"


def _modelscan_one(path: str) -> str:
    from modelscan.modelscan import ModelScan
    from modelscan.settings import DEFAULT_SETTINGS

    r = ModelScan(settings=DEFAULT_SETTINGS).scan(path)
    issues = r.get("issues") or []
    if issues:
        ops = sorted({str(i.get("operator", "?")) for i in issues})
        mods = sorted({str(i.get("module", "?")) for i in issues})
        return "issue: " + ", ".join(f"{m}.{o}" for m, o in zip(mods, ops, strict=False))[:60]
    if r.get("errors"):
        return "error"
    if not r.get("summary", {}).get("scanned", {}).get("total_scanned"):
        return "skipped"
    return "clean"


def _scan_driver(corpus: str, files: list[str], repeats: dict[str, int]) -> dict[str, Any]:
    """Time picklescan and modelscan on every file (runs in the tools' venv)."""
    import logging

    logging.disable(logging.CRITICAL)
    out: dict[str, Any] = {"versions": {}}
    from importlib.metadata import version

    for tool in ("picklescan", "modelscan"):
        out["versions"][tool] = version(tool)
    for tool, fn in (("picklescan", _picklescan_one), ("modelscan", _modelscan_one)):
        per_file = {}
        fn(os.path.join(corpus, files[0]))  # imports and caches warmed up
        for name in files:
            path = os.path.join(corpus, name)
            best, verdict = float("inf"), ""
            for _ in range(repeats.get(name, 3)):
                t0 = time.perf_counter()
                try:
                    verdict = fn(path)
                except Exception as exc:  # a crash is an outcome too
                    verdict = f"crash: {type(exc).__name__}"
                best = min(best, time.perf_counter() - t0)
            per_file[name] = {"verdict": verdict, "seconds": best}
        out[tool] = per_file
    return out


# -- scan: the corpus ---------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_scan_venv(venv: Path) -> Path:
    """The picklescan + modelscan virtualenv's python, created once (cached)."""
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.is_file() and python.is_file():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *SCAN_SPECS], check=True)
    marker.write_text(" ".join(SCAN_SPECS) + "\n")
    return python


def _large_models(quick: bool) -> dict[str, Callable[[], bytes]]:
    """Big benign files, for throughput: payload-heavy and opcode-heavy ones."""
    import io
    import pickle

    import joblib
    import numpy as np
    import pandas as pd
    from tests.registry import _payloads as pl

    n_rows, trees = (5_000, 10) if quick else (30_000, 80)  # about 80 MB in full
    forest_cache: dict[str, Any] = {}

    def forest() -> Any:
        if "m" not in forest_cache:
            _log(f"  training a random forest ({trees} trees, {n_rows:,} rows)")
            forest_cache["m"] = pl.sklearn_forest(n_estimators=trees, n=n_rows, noisy=True)
        return forest_cache["m"]

    def forest_joblib() -> bytes:
        out = io.BytesIO()
        joblib.dump(forest(), out)
        return out.getvalue()

    def vectorizer() -> bytes:
        from sklearn.feature_extraction.text import CountVectorizer

        terms = 50_000 if quick else 500_000
        vocab = {f"term{i:07d}": i for i in range(terms)}
        return pickle.dumps(CountVectorizer(vocabulary=vocab).fit(["term0000001"]), protocol=4)

    side = 1500 if quick else 4000
    strings = 100_000 if quick else 1_000_000
    return {
        "big_forest.pkl": lambda: pickle.dumps(forest(), protocol=4),
        "big_forest.joblib": forest_joblib,
        "big_vectorizer.pkl": vectorizer,  # opcode-heavy: a 500,000-term vocabulary
        "big_array.pkl": lambda: pickle.dumps(np.random.default_rng(0).normal(size=(side, side))),
        "big_strings_frame.pkl": lambda: pickle.dumps(
            pd.DataFrame(
                {
                    "s": np.array([f"user-{i}" for i in range(strings)], dtype=object),
                    "x": np.arange(strings, dtype=float),
                }
            )
        ),
    }


def build_scan_corpus(corpus: Path, quick: bool) -> dict[str, dict[str, Any]]:
    """Write the files of the corpus not written yet; returns name -> {kind, label}."""
    sys.path.insert(0, str(ROOT))
    from tests.registry import _payloads as pl

    marker = corpus / f".built-{SCAN_CORPUS_VERSION}{'-quick' if quick else ''}"
    index: dict[str, dict[str, Any]] = {}
    builders: dict[str, Callable[[], bytes]] = {}
    for p in pl.MALICIOUS:
        index[p.filename] = {"kind": "malicious", "label": p.name, "expect": p.verdict}
        builders[p.filename] = p.build
    for name, build in pl.benign().items():
        index[name] = {"kind": "benign", "label": name}
        builders[name] = build
    for name, build in _large_models(quick).items():
        index[name] = {"kind": "large", "label": name}
        builders[name] = build
    if not marker.is_file() and corpus.is_dir():  # made by another version: start again
        for old in corpus.iterdir():
            old.unlink()
    missing = [name for name in builders if not (corpus / name).is_file()]
    if missing:
        _log(f"building {len(missing)} files of the scan corpus under {corpus.relative_to(ROOT)}")
        corpus.mkdir(parents=True, exist_ok=True)
        for name in missing:
            (corpus / name).write_bytes(builders[name]())
    marker.write_text("")
    return index


# -- scan: measuring ------------------------------------------------------------------------------


def _ours_one(path: Path) -> str:
    from mlplane.registry.scan import scan_path

    r = scan_path(path)
    if r.verdict == "safe":
        return "safe"
    worst = [f for f in r.findings if f.verdict == r.verdict]
    names = sorted({f"{f.module}.{f.name}" for f in worst if f.module})
    return f"{r.verdict}: " + (", ".join(names) or worst[0].reason)[:60]


def _repeats(size: int) -> int:
    return 3 if size > 32 * MIB else 5


def bench_scan(args: argparse.Namespace) -> dict[str, Any]:
    """The ``scan`` section: detection and throughput, ours against picklescan and modelscan."""
    corpus = BENCH / "scan-corpus"
    _log("picklescan + modelscan virtualenv")
    python = ensure_scan_venv(BENCH / "scan-venv")
    index = build_scan_corpus(corpus, args.quick)
    files = list(index)
    sizes = {n: (corpus / n).stat().st_size for n in files}
    repeats = {n: _repeats(sizes[n]) for n in files}
    for name in files:  # the page cache warm for every tool alike
        with open(corpus / name, "rb") as f:
            while f.read(16 * MIB):
                pass

    _log("ours: mlplane.registry.scan.scan_path")
    ours: dict[str, Any] = {}
    _ours_one(corpus / files[0])
    for name in files:
        best, verdict = float("inf"), ""
        for _ in range(repeats[name]):
            t0 = time.perf_counter()
            verdict = _ours_one(corpus / name)
            best = min(best, time.perf_counter() - t0)
        ours[name] = {"verdict": verdict, "seconds": best}

    _log("picklescan and modelscan, in their virtualenv")
    request = json.dumps({"corpus": str(corpus), "files": files, "repeats": repeats})
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--scan-driver", request],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"scan driver failed:\n{proc.stderr[-3000:]}")
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {"index": index, "sizes": sizes, "ours": ours, **theirs}
    _render_scan(result)
    return result


def _caught(tool: str, verdict: str) -> bool:
    if tool == "ours":
        return verdict != "safe"
    return verdict.startswith(("dangerous", "issue"))


def _render_scan(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(width=max(Console().width, 150))
    tools = ("ours", "picklescan", "modelscan")
    names = {"ours": "ours", **{t: f"{t} {r['versions'][t]}" for t in tools[1:]}}

    t = Table(title="Detection: malicious files (caught = flagged so a registry would refuse it)")
    t.add_column("payload")
    for tool in tools:
        t.add_column(names[tool])
    caught = dict.fromkeys(tools, 0)
    malicious = [n for n, i in r["index"].items() if i["kind"] == "malicious"]
    for name in malicious:
        cells = []
        for tool in tools:
            v = r[tool][name]["verdict"]
            hit = _caught(tool, v)
            caught[tool] += hit
            cells.append(f"[{'green' if hit else 'red'}]{'caught' if hit else 'MISSED'}[/] {v}")
        t.add_row(r["index"][name]["label"], *cells)
    t.add_row("[b]caught", *[f"[b]{caught[tool]} / {len(malicious)}" for tool in tools])
    out.print(t)

    t = Table(title="Benign files (false alarms in red)")
    t.add_column("file")
    t.add_column("size", justify="right")
    for tool in tools:
        t.add_column(names[tool])
    for name, info in r["index"].items():
        if info["kind"] == "malicious":
            continue
        cells = []
        for tool in tools:
            v = r[tool][name]["verdict"]
            cells.append(f"[red]{v}[/]" if _caught(tool, v) else v)
        t.add_row(name, f"{r['sizes'][name] / MIB:,.1f} MiB", *cells)
    out.print(t)

    t = Table(title="Throughput (in-process, best of runs; higher is better)")
    for col in ("files", "MiB", *(f"{names[x]} MB/s" for x in tools), "ours/picklescan",
                "ours/modelscan"):  # fmt: skip
        t.add_column(col, justify="left" if col == "files" else "right")
    groups = {
        "whole corpus": list(r["index"]),
        "large models": [n for n, i in r["index"].items() if i["kind"] == "large"],
        "small files": [n for n, i in r["index"].items() if i["kind"] != "large"],
    }
    for label, members in groups.items():
        mb = sum(r["sizes"][n] for n in members) / 1e6
        rate = {x: mb / max(sum(r[x][n]["seconds"] for n in members), 1e-9) for x in tools}
        t.add_row(
            f"{label} ({len(members)})",
            f"{mb * 1e6 / MIB:,.1f}",
            *(f"{rate[x]:,.1f}" for x in tools),
            f"{rate['ours'] / rate['picklescan']:,.1f}x",
            f"{rate['ours'] / rate['modelscan']:,.1f}x",
        )
    out.print(t)
    t = Table(title="Large files, seconds (best of runs)")
    t.add_column("file")
    t.add_column("MiB", justify="right")
    for tool in tools:
        t.add_column(names[tool], justify="right")
    for name in groups["large models"]:
        secs = [f"{r[x][name]['seconds']:.3f}" for x in tools]
        t.add_row(name, f"{r['sizes'][name] / MIB:,.1f}", *secs)
    out.print(t)


# -- main ------------------------------------------------------------------------------------------


def bench_register(args: argparse.Namespace) -> dict[str, Any]:
    """Register + load + first predict of a scikit-learn pipeline, vs MLflow's
    ``log_model(registered_model_name=...)`` + ``load_model`` + predict, each against its
    own stock server (MLflow in its own virtualenv); medians of 5 (3 with --quick)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _registry_mlflow

    _log("register + load + predict: mlplane vs MLflow")
    r = _registry_mlflow.bench_register(3 if args.quick else 5)
    _render_register(r)
    return r


def _render_register(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Register + load + first predict (scikit-learn pipeline, seconds)")
    for head in ("step", "ours", f"MLflow {r['mlflow'].get('version', '')}", "ratio", "goal"):
        t.add_column(head, justify="left" if head in ("step", "goal") else "right")
    for key, label in (
        ("seconds", "end to end"),
        ("register_s", "register"),
        ("load_predict_s", "load + predict"),
    ):
        ours, theirs = r["ours"][key], r["mlflow"][key]
        goal = ">= 3x: " + ("met" if theirs / ours >= 3 else "not met") if key == "seconds" else ""
        t.add_row(label, f"{ours:.3f}", f"{theirs:.3f}", f"{theirs / ours:.1f}x", goal)
    Console().print(t)


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "scan": bench_scan,
    "register": bench_register,
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--scan-driver"]:  # inside the tools' virtualenv
        req = json.loads(argv[1])
        sys.stdout.write(json.dumps(_scan_driver(req["corpus"], req["files"], req["repeats"])))
        sys.stdout.write("\n")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run this section")
    ap.add_argument("--quick", action="store_true", help="smaller large files, for a smoke run")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    args = ap.parse_args(argv)
    results = {}
    t0 = time.perf_counter()
    for name in args.only or list(SECTIONS):
        results[name] = SECTIONS[name](args)
    _log(f"wall time {(time.perf_counter() - t0) / 60:.1f} min")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
