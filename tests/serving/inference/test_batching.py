"""The batcher and the predictors on their own (no server): grouping, isolation of a bad
request, batching off, deadlines; the array fast path and its fallbacks."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlplane.errors import InvalidInput, Unavailable
from mlplane.registry.flavors.base import PyFuncModel
from mlplane.registry.flavors.sklearn import SklearnFlavor
from mlplane.registry.signature import infer_signature
from mlplane.serving.inference import protocols
from mlplane.serving.inference.batcher import Batcher
from mlplane.serving.inference.predictors import FRAME, ROWS, Predictor
from mlplane.serving.inference.readers import Reader


def _double(batch: np.ndarray) -> np.ndarray:
    if (batch < 0).any():
        raise ValueError("negative rows are refused")
    return batch[:, 0] * 2


async def _run(batcher_kw: dict[str, Any], values: list[float]) -> tuple[list[Any], list[int]]:
    sizes: list[int] = []
    batcher = Batcher(
        _double,
        np.concatenate,
        Predictor.split,
        loop=asyncio.get_running_loop(),
        on_batch=lambda items, results, rows, s: sizes.append(len(items)),
        **batcher_kw,
    )
    futures = [batcher.submit(np.array([[v]]), 1) for v in values]
    results = await asyncio.gather(*futures, return_exceptions=True)
    batcher.close()
    return results, sizes


def test_concurrent_requests_share_a_call_and_a_bad_one_fails_alone() -> None:
    results, sizes = asyncio.run(_run({"max_batch_size": 64}, [1, 2, -3, 4, 5]))
    assert [float(r[0]) for r in results if not isinstance(r, Exception)] == [2, 4, 8, 10]
    assert isinstance(results[2], ValueError)
    assert max(sizes) > 1  # submitted in one loop iteration: one batch, then split up


def test_batches_stay_under_max_batch_size_and_off_means_one_by_one() -> None:
    _, sizes = asyncio.run(_run({"max_batch_size": 2}, [1.0] * 7))
    assert max(sizes) <= 2 and sum(sizes) == 7
    _, sizes = asyncio.run(_run({"enabled": False}, [1.0] * 5))
    assert sizes == [1] * 5


def test_a_closed_batcher_refuses_and_expired_items_are_dropped() -> None:
    async def main() -> None:
        b = Batcher(_double, np.concatenate, Predictor.split, loop=asyncio.get_running_loop())
        late = b.submit(np.array([[1.0]]), 1, deadline=1e-9)  # already past
        with pytest.raises(TimeoutError):
            await late
        b.close()
        with pytest.raises(Unavailable):
            b.submit(np.array([[1.0]]), 1)

    asyncio.run(main())


def _model(model: Any, x: pd.DataFrame) -> PyFuncModel:
    flavor = SklearnFlavor()
    return PyFuncModel(flavor, model, infer_signature(x, flavor.predict(model, x)))


def test_numeric_sklearn_models_take_the_array_path_without_warnings() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(50, 3)), columns=["a", "b", "c"])
    y = (x["a"] > 0).astype(int)
    for est in (
        LogisticRegression(),
        Pipeline([("s", StandardScaler()), ("m", LogisticRegression())]),
    ):
        pred = Predictor(_model(est.fit(x, y), x))
        pred.warm(x[:5])
        assert pred.kind == ROWS and pred.fast
        data, _ = protocols.read_predict(Reader(pred), {"instances": x[:4].to_numpy().tolist()})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "X does not have valid feature names"
            assert pred.predict(data).tolist() == est.predict(x[:4]).tolist()
        assert "feature_names_in_" in vars(est.steps[0][1] if hasattr(est, "steps") else est)


def test_string_columns_take_the_frame_path_checked_per_request() -> None:
    x = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0], "country": ["US", "DE", "US", "FR"]})
    y = np.array([0, 1, 0, 1])
    prep = ColumnTransformer(
        [
            ("n", StandardScaler(), ["amount"]),
            ("c", OneHotEncoder(handle_unknown="ignore"), ["country"]),
        ]
    )
    est = Pipeline([("p", prep), ("m", LogisticRegression())]).fit(x, y)
    pred = Predictor(_model(est, x))
    pred.warm(x[:2])
    assert pred.kind == FRAME
    reader = Reader(pred)
    data, n = protocols.read_predict(reader, {"dataframe_records": x.to_dict(orient="records")})
    assert n == 4 and pred.predict(pred.concat([data])).tolist() == est.predict(x).tolist()
    with pytest.raises(InvalidInput, match="amount"):
        protocols.read_predict(reader, {"dataframe_records": [{"amount": "much", "country": "US"}]})


def test_integer_columns_refuse_fractions_and_strings_never_become_numbers() -> None:
    x = pd.DataFrame({"n": [1, 2, 3, 4], "v": [0.5, 1.5, 2.5, 3.5]})
    est = LogisticRegression().fit(x, [0, 1, 0, 1])
    pred = Predictor(_model(est, x))
    pred.warm(x[:2])
    reader = Reader(pred)
    assert protocols.read_predict(reader, {"instances": [[2, 0.5]]})[1] == 1
    with pytest.raises(InvalidInput, match="'n' should be int64"):
        protocols.read_predict(reader, {"instances": [[2.5, 0.5]]})
    with pytest.raises(InvalidInput, match="'v'"):
        protocols.read_predict(reader, {"instances": [[2, "0.5"]]})
