"""A first look at mlplane in a few seconds: a versioned dataset behind a quality gate,
four tracked models trained on it (scikit-learn's breast-cancer data, no downloads), and
the best one registered (scanned, with its signature and ONNX parity) as the champion.

The data is stored as a dataset version (``breast_cancer@N``: profiled, PII-scanned,
compressed and encrypted) after passing a quality contract. Each model is one run
with its params, step-wise metrics (cross-validation folds,
trees grown, boosting stages), final test metrics, a confusion matrix and a
classification report as artifacts, and the dataset recorded as an input.
``mlplane quickstart`` calls :func:`run_quickstart` and prints the comparison.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mlplane import seeding
from mlplane.client import Client
from mlplane.tracking.entities import Metric, RunInput

__all__ = ["DATASET", "MAIN_METRIC", "run_quickstart"]

DATASET = "breast_cancer"
CONTRACT = {
    "columns": {
        "target": {"not_null": True, "in_set": [0, 1]},
        "mean radius": {"not_null": True, "between": {"min": 0, "max": 100}},
        "mean texture": {"between": {"min": 0, "max": 100}},
    },
    "table": {"row_count": {"min": 500}},
}
"""The quickstart's quality gate: a version that breaks it is refused."""
MAIN_METRIC = "accuracy"
"""Runs are ranked by this test metric, ties broken by ``roc_auc``."""

ProgressFn = Callable[[str, int, int], None]
"""Called as ``progress(what, done, total)`` before each model and once at the end."""

_TEST_SIZE = 0.2
_VAL_SIZE = 0.2


@dataclass(frozen=True)
class _Data:
    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    x_test: Any
    y_test: Any
    labels: list[str]
    digest: str
    version: Any = None
    """The stored dataset version the models train on."""


@dataclass(frozen=True)
class _Candidate:
    run_name: str
    model: str
    params: dict[str, Any]


_CANDIDATES = (
    _Candidate("logreg-C1", "logistic_regression", {"C": 1.0, "solver": "liblinear"}),
    _Candidate("forest-50-depth4", "random_forest", {"n_estimators": 50, "max_depth": 4}),
    _Candidate("forest-100", "random_forest", {"n_estimators": 100, "max_depth": None}),
    _Candidate(
        "boosting-50",
        "gradient_boosting",
        {"n_estimators": 50, "learning_rate": 0.2, "max_depth": 3},
    ),
)


def run_quickstart(
    client: Client | None = None,
    *,
    experiment: str = "quickstart",
    progress: ProgressFn | None = None,
    seed: int = 42,
) -> dict[str, Any]:
    """Train and track the quickstart models; return a summary, best run first.

    Args:
        client: where to track; default: a new :class:`Client` on ``MLPLANE_URI``
            (the embedded store unless that names a server).
        experiment: experiment name, created when missing.
        progress: optional callback for a progress display.
        seed: seeds Python, NumPy and every model.

    Returns:
        ``experiment_id``, ``experiment``, ``dataset``, ``main_metric``,
        ``runs`` (each with ``run_id``, ``run_name``, ``model``, ``params``,
        ``metrics``; best first), ``run_ids`` (in training order) and ``best_run_id``.
    """
    own = client is None
    c = client if client is not None else Client()
    try:
        if progress is not None:
            progress("versioning the data", 0, len(_CANDIDATES))
        data = _load_data(seed)
        version = _store_data(c)
        data = replace(data, version=version)
        eid = c.get_or_create_experiment(experiment)
        results: list[dict[str, Any]] = []
        models: dict[str, Any] = {}
        for i, cand in enumerate(_CANDIDATES):
            if progress is not None:
                progress(f"training {cand.run_name}", i, len(_CANDIDATES))
            result, estimator = _track(c, eid, cand, data, seed)
            results.append(result)
            models[result["run_id"]] = estimator
        ranked = sorted(
            results,
            key=lambda r: (r["metrics"][MAIN_METRIC], r["metrics"]["roc_auc"]),
            reverse=True,
        )
        if progress is not None:
            progress("registering the best model", len(_CANDIDATES), len(_CANDIDATES) + 1)
        registered = _register_best(c, ranked[0], models[ranked[0]["run_id"]], data)
        if progress is not None:
            progress("done", len(_CANDIDATES) + 1, len(_CANDIDATES) + 1)
    finally:
        if own:
            c.close()
    return {
        "model": registered,
        "experiment_id": eid,
        "experiment": experiment,
        "dataset": data.version.ref if data.version is not None else DATASET,
        "dataset_digest": data.digest,
        "quality_checks": len(data.version.quality.results)
        if data.version is not None and data.version.quality is not None
        else 0,
        "main_metric": MAIN_METRIC,
        "runs": ranked,
        "run_ids": [r["run_id"] for r in results],
        "best_run_id": ranked[0]["run_id"],
    }


MODEL_NAME = "breast-cancer-classifier"


def _register_best(c: Client, best: dict[str, Any], estimator: Any, data: _Data) -> dict[str, Any]:
    """Register the best model (scanned, signed if the project has a key) and make it the
    champion: the default policy requires a safe scan verdict."""
    import tempfile
    from pathlib import Path

    from mlplane.registry._build import write_folder

    with tempfile.TemporaryDirectory(prefix="mlplane-quickstart-model-") as tmp:
        folder = Path(tmp) / "model"
        write_folder(estimator, folder, data.x_test[:5])
        version = c.transport.register_model(
            MODEL_NAME,
            folder,
            project="default",
            metrics={k: float(v) for k, v in best["metrics"].items()},
            params=best["params"],
            run_id=best["run_id"],
            description=f"best of the quickstart runs by {MAIN_METRIC}",
            tags={},
            allow_unknown=False,
        )
    champion = c.transport.set_model_alias(
        MODEL_NAME, "champion", version.version, project="default"
    )
    return {
        "name": MODEL_NAME,
        "version": champion.version,
        "alias": "champion",
        "scan": champion.scan_verdict,
        "onnx_parity": (champion.onnx or {}).get("parity_max_abs_diff"),
    }


def _store_data(c: Client) -> Any:
    """Store the data as a dataset version through the quality gate (a no-op when the
    same data is already the newest version)."""
    import tempfile
    from pathlib import Path

    from sklearn.datasets import load_breast_cancer

    from mlplane.datasets.contracts import load_contract

    frame = load_breast_cancer(as_frame=True).frame
    with tempfile.TemporaryDirectory(prefix="mlplane-quickstart-") as tmp:
        path = Path(tmp) / "breast_cancer.parquet"
        frame.to_parquet(path, index=False)
        result = c.transport.add_dataset(
            DATASET,
            path,
            project="default",
            progress=None,
            contract=load_contract(CONTRACT).to_json(),
            pii="mask",
        )
    return result.version


def _load_data(seed: int) -> _Data:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    bunch = load_breast_cancer()
    x, y = bunch.data, bunch.target
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=_TEST_SIZE, random_state=seed, stratify=y
    )
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=_VAL_SIZE / (1 - _TEST_SIZE), random_state=seed, stratify=y_rest
    )
    return _Data(
        x_train, y_train, x_val, y_val, x_test, y_test, [str(n) for n in bunch.target_names], digest
    )


def _track(
    c: Client, eid: str, cand: _Candidate, data: _Data, seed: int
) -> tuple[dict[str, Any], Any]:
    run = c.create_run(
        eid, run_name=cand.run_name, tags={"quickstart": "true", "model": cand.model}
    )
    rid = run.info.run_id
    try:
        seed_tags = seeding.seed_everything(seed)
        params = {
            "model": cand.model,
            **cand.params,
            "seed": seed,
            "test_size": _TEST_SIZE,
            "val_size": _VAL_SIZE,
        }
        c.log_batch(rid, params=params, tags=seed_tags)
        c.log_inputs(
            rid,
            [
                RunInput(
                    kind="dataset",
                    name=DATASET,
                    version=str(data.version.version),
                    digest=data.version.digest,
                    source=f"mlplane-data:default/{data.version.ref}",
                    context="training",
                )
            ],
        )
        started = time.perf_counter()
        estimator, steps = _FIT[cand.model](cand.params, data, seed)
        final = _evaluate(estimator, data)
        final["train_time_s"] = time.perf_counter() - started
        now = time.time_ns() // 1_000_000
        points = [Metric(k, float(v), now, step) for k, v, step in steps]
        points += [Metric(k, float(v), now, 0) for k, v in final.items()]
        c.log_batch(rid, metrics=points)
        c.log_dict(rid, _confusion(estimator, data), "eval/confusion_matrix.json")
        c.log_text(rid, _report(estimator, data), "eval/classification_report.txt")
        c.set_terminated(rid, "FINISHED")
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        with contextlib.suppress(Exception):  # keep the original error
            c.set_terminated(rid, status)
        raise
    return {
        "run_id": rid,
        "run_name": cand.run_name,
        "model": cand.model,
        "params": {k: str(v) for k, v in params.items()},
        "metrics": final,
    }, estimator


# -- the models: each returns the fitted estimator and its (key, value, step) points ----------


Steps = list[tuple[str, float, int]]


def _fit_logreg(params: dict[str, Any], d: _Data, seed: int) -> tuple[Any, Steps]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = make_pipeline(StandardScaler(), LogisticRegression(**params, random_state=seed))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_score(est, d.x_train, d.y_train, cv=folds)
    est.fit(d.x_train, d.y_train)
    steps = [("cv_accuracy", float(s), i) for i, s in enumerate(scores)]
    steps.append(("val_accuracy", float(est.score(d.x_val, d.y_val)), 0))
    return est, steps


def _fit_forest(params: dict[str, Any], d: _Data, seed: int) -> tuple[Any, Steps]:
    from sklearn.ensemble import RandomForestClassifier

    total = params["n_estimators"]
    est = RandomForestClassifier(max_depth=params["max_depth"], warm_start=True, random_state=seed)
    steps: Steps = []
    for n in range(25, total + 1, 25):  # grow the forest, scoring it as it grows
        est.set_params(n_estimators=n)
        est.fit(d.x_train, d.y_train)
        steps.append(("val_accuracy", float(est.score(d.x_val, d.y_val)), n))
    return est, steps


def _fit_boosting(params: dict[str, Any], d: _Data, seed: int) -> tuple[Any, Steps]:
    from sklearn.ensemble import GradientBoostingClassifier

    est = GradientBoostingClassifier(**params, random_state=seed).fit(d.x_train, d.y_train)
    steps: Steps = [("train_loss", float(loss), i + 1) for i, loss in enumerate(est.train_score_)]
    for i, pred in enumerate(est.staged_predict(d.x_val)):
        steps.append(("val_accuracy", float((pred == d.y_val).mean()), i + 1))
    return est, steps


_FIT: dict[str, Callable[[dict[str, Any], _Data, int], tuple[Any, Steps]]] = {
    "logistic_regression": _fit_logreg,
    "random_forest": _fit_forest,
    "gradient_boosting": _fit_boosting,
}


def _evaluate(est: Any, d: _Data) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    pred = est.predict(d.x_test)
    proba = est.predict_proba(d.x_test)[:, 1]
    return {
        "accuracy": float(accuracy_score(d.y_test, pred)),
        "f1": float(f1_score(d.y_test, pred)),
        "roc_auc": float(roc_auc_score(d.y_test, proba)),
    }


def _confusion(est: Any, d: _Data) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(d.y_test, est.predict(d.x_test))
    return {
        "labels": d.labels,
        "rows": "true label",
        "columns": "predicted label",
        "matrix": matrix.tolist(),
    }


def _report(est: Any, d: _Data) -> str:
    from sklearn.metrics import classification_report

    report: str = classification_report(
        d.y_test, est.predict(d.x_test), target_names=d.labels, digits=4
    )
    return report
