"""``mlplane.autolog()``: track scikit-learn, XGBoost and LightGBM training without code.

``fit`` of every scikit-learn estimator (and of the XGBoost and LightGBM
scikit-learn wrappers and ``train`` functions) is wrapped. The outermost fit in
a thread is tracked: it starts a run when none is active, logs the estimator's
parameters, its training score (``score`` on the training data: accuracy for
classifiers, R² for regressors) and, for boosters, the evaluation history per
iteration; with ``register="name"`` the fitted model is registered with the
training data's first rows as the input example. Fits nested inside another
(a pipeline's steps, a grid search's candidates) are not logged on their own.
``autolog(disable=True)`` restores the original methods.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from typing import Any

_state = threading.local()
_patched: list[tuple[Any, str, Any]] = []
_config: dict[str, Any] = {}
_lock = threading.Lock()


def autolog(
    *,
    register: str | None = None,
    log_models: bool = True,
    input_example_rows: int = 5,
    disable: bool = False,
) -> None:
    """Turn automatic tracking on (or off with ``disable=True``).

    Args:
        register: a model name; each tracked fit registers a new version of it.
        log_models: register models at all (``register`` must be set too).
        input_example_rows: rows of the training data kept as the input example.
    """
    with _lock:
        _unpatch()
        if disable:
            return
        _config.update(register=register, log_models=log_models, rows=input_example_rows)
        for cls in _estimator_classes():
            if "fit" in vars(cls):
                _patch(cls, "fit", _wrap_fit)


def _estimator_classes() -> list[type]:
    out: list[type] = []
    try:
        from sklearn.pipeline import Pipeline
        from sklearn.utils import all_estimators

        out += [cls for _, cls in all_estimators()] + [Pipeline]
    except ImportError:  # scikit-learn is a dependency, but stay safe
        pass
    for module, names in (
        ("xgboost", ("XGBModel", "XGBClassifier", "XGBRegressor", "XGBRanker")),
        ("lightgbm", ("LGBMModel", "LGBMClassifier", "LGBMRegressor", "LGBMRanker")),
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        out += [getattr(mod, n) for n in names if hasattr(mod, n)]
    return list(dict.fromkeys(out))


def _patch(owner: Any, attr: str, wrapper: Callable[[Any], Any]) -> None:
    original = vars(owner)[attr] if isinstance(owner, type) else getattr(owner, attr)
    _patched.append((owner, attr, original))
    setattr(owner, attr, wrapper(original))


def _unpatch() -> None:
    while _patched:
        owner, attr, original = _patched.pop()
        setattr(owner, attr, original)


def _wrap_fit(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(_state, "depth", 0)
        _state.depth = depth + 1
        try:
            result = original(self, *args, **kwargs)
        finally:
            _state.depth = depth
        if depth == 0:
            _track(self, args, kwargs)
        return result

    fit.__mlplane_autolog__ = True  # type: ignore[attr-defined]
    return fit


def _track(estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Log one fit; tracking problems are warned about, never raised into training code."""
    import warnings

    from mlplane.errors import MlplaneError

    try:
        _log_fit(estimator, args, kwargs)
    except MlplaneError as exc:
        warnings.warn(f"mlplane.autolog could not track this fit: {exc}", stacklevel=3)


def _log_fit(estimator: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    from mlplane import fluent, registry

    x = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    own_run = fluent.active_run() is None
    run = fluent.start_run(capture_context=True) if own_run else fluent.active_run()
    assert run is not None
    try:
        params = {k: _short(v) for k, v in estimator.get_params(deep=False).items()}
        params["estimator"] = type(estimator).__qualname__
        fluent.log_params(params)
        metrics: dict[str, float] = {}
        if x is not None and y is not None and hasattr(estimator, "score"):
            try:
                metrics["training_score"] = float(estimator.score(x, y))
            except Exception:  # some estimators cannot score their own input
                pass
        per_step = max(1, len(_eval_names(estimator)))
        for i, (key, value) in enumerate(_eval_history(estimator)):
            fluent.log_metric(key, value, step=i // per_step)
        if metrics:
            fluent.log_metrics(metrics)
        name: str | None = _config.get("register")
        if name and _config.get("log_models", True):
            example = _head(x, int(_config.get("rows", 5)))
            registry.register(
                name, estimator, input_example=example, metrics=metrics, run_id=run.info.run_id
            )
    finally:
        if own_run:
            fluent.end_run()


def _eval_names(estimator: Any) -> list[str]:
    results = getattr(estimator, "evals_result_", None)
    if not isinstance(results, dict):
        return []
    return [f"{d}_{m}" for d, ms in results.items() for m in ms]


def _eval_history(estimator: Any) -> list[tuple[str, float]]:
    """Per-iteration evaluation metrics of XGBoost and LightGBM models, step-major."""
    results = getattr(estimator, "evals_result_", None)
    if not isinstance(results, dict) or not results:
        return []
    series = [(f"{d}_{m}", list(vals)) for d, ms in results.items() for m, vals in ms.items()]
    steps = max(len(v) for _, v in series)
    return [(n, float(v[i])) for i in range(steps) for n, v in series if i < len(v)]


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 500 else text[:497] + "..."


def _head(x: Any, rows: int) -> Any:
    if x is None:
        return None
    if hasattr(x, "iloc"):
        return x.iloc[:rows]
    try:
        return x[:rows]
    except Exception:
        return None
