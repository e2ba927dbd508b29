"""``mlplane.autolog()`` over real scikit-learn and XGBoost fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import mlplane


@pytest.fixture
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    return x, (x["a"] + x["b"] > 0).astype(int).to_numpy()


def _runs() -> list[mlplane.Run]:
    return mlplane.search_runs(order_by=["attributes.start_time DESC"], output_format="list")  # type: ignore[no-any-return]


def test_pipeline_fit_is_one_run_and_registers(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    x, y = data
    mlplane.autolog(register="auto-model")
    try:
        pipe = Pipeline([("s", StandardScaler()), ("m", LogisticRegression())]).fit(x, y)
    finally:
        mlplane.autolog(disable=True)
    runs = _runs()
    assert len(runs) == 1  # the steps' own fits are nested: not logged on their own
    run = runs[0]
    assert run.data.params["estimator"] == "Pipeline"
    assert run.data.metrics["training_score"] == pytest.approx(pipe.score(x, y))
    (v,) = mlplane.registry.versions("auto-model")
    assert v.run_id == run.info.run_id and v.signature is not None
    loaded = mlplane.registry.load("auto-model@1")
    assert (loaded.predict(x) == pipe.predict(x)).all()
    assert not hasattr(LogisticRegression.fit, "__mlplane_autolog__")  # restored


def test_fit_inside_an_active_run_logs_into_it(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    x, y = data
    mlplane.autolog()
    try:
        with mlplane.start_run(capture_context=False) as run:
            LogisticRegression(C=0.5).fit(x, y)
    finally:
        mlplane.autolog(disable=True)
    got = mlplane.get_run(run.info.run_id)
    assert got.data.params["C"] == "0.5" and "training_score" in got.data.metrics
    assert mlplane.registry.ls() == []  # nothing registered without register=


def test_xgboost_eval_history(data: tuple[pd.DataFrame, np.ndarray]) -> None:
    xgb = pytest.importorskip("xgboost")
    x, y = data
    mlplane.autolog()
    try:
        xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(x, y, eval_set=[(x, y)], verbose=False)
    finally:
        mlplane.autolog(disable=True)
    run = _runs()[0]
    history = mlplane.Client().get_metric_history(run.info.run_id, "validation_0_logloss")
    assert [p.step for p in history] == [0, 1, 2, 3, 4]
