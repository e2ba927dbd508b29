"""Register + load + first predict of a scikit-learn pipeline: mlplane vs MLflow.

Two lives, like ``_common.py``: ``benchmarks/registry.py`` imports
:func:`bench_register` (our side, and it drives MLflow's), and the MLflow
virtualenv's interpreter runs this file as the MLflow driver
(``python _registry_mlflow.py register JSON``). Only the standard library is
imported at module level; both sides build the same pipeline on the same
data from :func:`make_pipeline`.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROWS = 5_000
FEATURES = 20


def make_pipeline() -> tuple[Any, Any]:
    """A fitted StandardScaler + OneHotEncoder + LogisticRegression pipeline and its data."""
    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(7)
    x = pd.DataFrame({f"f{i}": rng.normal(size=ROWS) for i in range(FEATURES)})
    x["country"] = rng.choice(["US", "DE", "FR", "GB"], ROWS)
    y = (x["f0"] + x["f1"] > 0).astype(int)
    num = [f"f{i}" for i in range(FEATURES)]
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), num),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=300)),
        ]
    ).fit(x, y)
    return pipe, x


def timed_rounds(repeats: int, register: Any, load_predict: Any) -> dict[str, float]:
    """Medians over ``repeats`` rounds (after one warm-up) of ``register(name)`` and then
    ``load_predict(name, registered)``, each round under a fresh model name."""
    times, register_s, load_s = [], [], []
    for i in range(repeats + 1):  # the first round warms imports and the server
        name = f"bench-{uuid.uuid4().hex[:8]}"
        t0 = time.perf_counter()
        registered = register(name)
        t1 = time.perf_counter()
        load_predict(name, registered)
        t2 = time.perf_counter()
        if i:
            times.append(t2 - t0)
            register_s.append(t1 - t0)
            load_s.append(t2 - t1)
    return {
        "seconds": statistics.median(times),
        "register_s": statistics.median(register_s),
        "load_predict_s": statistics.median(load_s),
    }


# -- MLflow's side (runs inside the MLflow venv) --------------------------------------------------


def _mlflow_register(a: dict[str, Any]) -> dict[str, Any]:
    import logging

    import mlflow

    logging.disable(logging.WARNING)
    mlflow.set_tracking_uri(a["uri"])
    mlflow.set_experiment("registry-bench")
    pipe, x = make_pipeline()

    def register(name: str) -> Any:
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(
                pipe, name="model", registered_model_name=name, input_example=x[:5]
            )
        return info.registered_model_version

    def load_predict(name: str, version: Any) -> None:
        mlflow.pyfunc.load_model(f"models:/{name}/{version}").predict(x[:100])

    return {**timed_rounds(a["repeats"], register, load_predict), "version": mlflow.__version__}


# -- our side ------------------------------------------------------------------------------------


def ours_register(url: str, repeats: int) -> dict[str, Any]:
    import mlplane

    mlplane.set_tracking_uri(url)
    pipe, x = make_pipeline()

    def register(name: str) -> Any:
        with mlplane.start_run(capture_context=True):
            return mlplane.registry.register(name, pipe, input_example=x[:5]).version

    def load_predict(name: str, version: Any) -> None:
        mlplane.registry.load(f"models:/{name}/{version}").predict(x[:100])

    return timed_rounds(repeats, register, load_predict)


def bench_register(repeats: int = 5) -> dict[str, Any]:
    """Both sides against their own stock server, in this run; medians of ``repeats``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common as common

    root = Path(__file__).resolve().parent.parent / ".bench"
    python = common.ensure_mlflow_venv(root / "mlflow-venv")
    with tempfile.TemporaryDirectory(prefix="registry-bench-") as tmp:
        with common.mlflow_server(python, Path(tmp) / "mlflow") as srv:
            theirs = _run_mlflow(python, common.url_of(srv), repeats)
        with common.mlplane_server(Path(tmp) / "mlplane") as srv:
            ours = ours_register(common.url_of(srv), repeats)
    return {"ours": ours, "mlflow": theirs, "ratio": theirs["seconds"] / ours["seconds"]}


def _run_mlflow(python: Path, uri: str, repeats: int) -> dict[str, Any]:
    import subprocess

    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "register",
         json.dumps({"uri": uri, "repeats": repeats})],
        capture_output=True, text=True, timeout=3600,
        env={"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore", "HOME": tempfile.gettempdir()},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"MLflow register driver failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    ops = {"register": _mlflow_register}
    sys.stdout.write(json.dumps(ops[sys.argv[1]](json.loads(sys.argv[2]))) + "\n")
