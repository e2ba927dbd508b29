"""Prediction shift (PSI, Jensen-Shannon) and the canary verdict."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from mlplane.errors import InvalidInput
from mlplane.serving.analysis import CanaryThresholds, distribution_shift, judge
from mlplane.serving.stats import OutputStats, WindowStats

RNG = np.random.default_rng(42)


def _outputs(values: object, kind: str | None = None) -> OutputStats:
    out = OutputStats(kind)
    out.add(values)
    return out


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=200),
    st.sampled_from(["psi", "js"]),
)
def test_identical_distributions_have_no_shift(values: list[float], method: str) -> None:
    a, b = _outputs(np.array(values)), _outputs(np.array(values[::-1]))
    assert distribution_shift(a, b, method=method) == pytest.approx(0.0, abs=1e-12)


def test_disjoint_distributions_have_a_large_shift() -> None:
    low, high = _outputs(RNG.uniform(0, 1, 5000)), _outputs(RNG.uniform(5, 6, 5000))
    assert distribution_shift(low, high, method="psi") > 5
    assert distribution_shift(low, high, method="js") == pytest.approx(1.0)
    cats, dogs = _outputs(["cat"] * 100), _outputs(["dog"] * 100)
    assert distribution_shift(cats, dogs, method="js") == pytest.approx(1.0)
    assert distribution_shift(cats, dogs) > 5


def test_constant_stable_outputs_still_see_a_moved_canary() -> None:
    # One distinct stable value makes one cut; the canary above it must not share its bin.
    assert distribution_shift(_outputs([0.5] * 100), _outputs([0.7] * 100), method="js") == 1.0


def test_shift_grows_with_the_move_and_small_samples_stay_small() -> None:
    base = _outputs(RNG.normal(0, 1, 20_000))
    same = _outputs(RNG.normal(0, 1, 20_000))
    nudged = _outputs(RNG.normal(0.3, 1, 20_000))
    moved = _outputs(RNG.normal(1.0, 1, 20_000))
    psi = [distribution_shift(base, x) for x in (same, nudged, moved)]
    assert psi[0] < 0.01 < psi[1] < psi[2]
    assert psi[2] > 0.25  # the usual "major shift" line


def test_label_shift_matches_scipy_jensen_shannon() -> None:
    stable = _outputs(["a"] * 70 + ["b"] * 20 + ["c"] * 10)
    canary = _outputs(["a"] * 40 + ["b"] * 40 + ["d"] * 20)
    p, q = np.array([0.7, 0.2, 0.1, 0.0]), np.array([0.4, 0.4, 0.0, 0.2])
    assert distribution_shift(stable, canary, method="js") == pytest.approx(
        jensenshannon(p, q, base=2)
    )
    eps = np.maximum
    pe, qe = eps(p, 1e-4), eps(q, 1e-4)
    assert distribution_shift(stable, canary) == pytest.approx(np.sum((qe - pe) * np.log(qe / pe)))


def test_shift_edge_cases() -> None:
    assert distribution_shift(OutputStats(), _outputs([1.0])) is None
    assert distribution_shift(_outputs([0.2, 0.4]), _outputs([1, 2]), method="js") == 1.0
    only_nan = _outputs(np.full(10, np.nan))
    assert distribution_shift(only_nan, _outputs(np.ones(10)), method="js") == 1.0
    assert distribution_shift(only_nan, only_nan) == 0.0
    with pytest.raises(InvalidInput, match="bins"):
        distribution_shift(only_nan, only_nan, bins=0)
    with pytest.raises(InvalidInput, match="method"):
        distribution_shift(_outputs([1.0]), _outputs([1.0]), method="kl")


def _window(
    n: int, error_rate: float = 0.0, latency: float = 20.0, shift: float = 0.0, seed: int = 0
) -> WindowStats:
    rng = np.random.default_rng(seed)
    w = WindowStats()
    errors = round(n * error_rate)
    for i in range(n):
        status = 500 if i < errors else 200
        preds = rng.normal(shift, 1, 8) if status == 200 else None
        w.record(float(rng.gamma(4, latency / 4)), 8, status=status, predictions=preds)
    for _ in range(n // 10):
        w.record(1.0, 1, status=422)  # input errors never count against the model
    return w


GATES = CanaryThresholds(
    max_error_rate=0.01, max_p99_ms=200.0, max_prediction_shift=0.2, max_p99_ratio=1.5
)


def test_good_canary_passes() -> None:
    check = judge(_window(2000, seed=1), _window(500, seed=2), GATES)
    assert check.verdict == "pass", check.breaches
    assert check.breaches == [] and check.notes == []
    assert (check.canary_requests, check.canary_errors, check.canary_error_rate) == (500, 0, 0.0)
    assert check.shift is not None and check.shift < 0.05
    assert json.loads(json.dumps(check.to_dict()))["verdict"] == "pass"


@pytest.mark.parametrize(
    ("canary", "breach"),
    [
        ({"error_rate": 0.031}, "error rate 3.1% > 1.0%"),
        ({"latency": 60.0}, "x stable p99"),
        ({"latency": 200.0}, "ms > 200.0 ms"),
        ({"shift": 1.5}, "prediction shift (psi)"),
    ],
)
def test_bad_canary_fails(canary: dict, breach: str) -> None:
    check = judge(_window(2000, seed=1), _window(1000, seed=3, **canary), GATES)
    assert check.verdict == "fail"
    assert any(breach in b for b in check.breaches), check.breaches


def test_rejected_requests_are_not_model_errors() -> None:
    canary = _window(500, seed=4)
    for _ in range(400):
        canary.record(1.0, 1, status=400)
    check = judge(_window(2000, seed=1), canary, GATES)
    assert check.verdict == "pass" and check.canary_error_rate == 0.0


def test_few_requests_are_inconclusive() -> None:
    check = judge(_window(2000, seed=1), _window(20, error_rate=0.5, seed=5), GATES)
    assert check.verdict == "inconclusive" and check.breaches == []
    assert "fewer than 50" in check.notes[0]
    # Enough canary traffic but a thin stable side: the absolute checks still count.
    check = judge(_window(10, seed=1), _window(200, error_rate=0.05, seed=6), GATES)
    assert check.verdict == "fail" and len(check.breaches) == 1
    check = judge(_window(10, seed=1), _window(200, seed=6), GATES)
    assert check.verdict == "inconclusive" and "stable has 10" in check.notes[0]


def test_thresholds_are_validated() -> None:
    with pytest.raises(InvalidInput, match="shift_method"):
        CanaryThresholds(shift_method="kl")
    with pytest.raises(InvalidInput, match="max_error_rate"):
        CanaryThresholds(max_error_rate=-0.1)
    with pytest.raises(InvalidInput, match="min_requests"):
        CanaryThresholds(min_requests=0)
    assert judge(_window(100), _window(100), CanaryThresholds()).verdict == "pass"
