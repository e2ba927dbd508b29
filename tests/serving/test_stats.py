"""Sketches within their relative error, exact merges and roundtrips; output and window stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlplane.errors import InvalidInput
from mlplane.serving.stats import OTHER, OutputStats, Sketch, WindowStats

# Magnitudes whose buckets fit in 2048 (1e-6..1e9 spans ~1730 keys at alpha=0.01),
# so no bucket is collapsed and the error bound holds for every quantile.
_magnitude = st.floats(min_value=1e-6, max_value=1e9)
_value = st.one_of(_magnitude, _magnitude.map(lambda x: -x), st.just(0.0))
_values = st.lists(_value, min_size=1, max_size=300)
_q = st.floats(min_value=0.0, max_value=1.0)


def _sketch(values: list[float] | np.ndarray) -> Sketch:
    s = Sketch()
    s.add_many(values)
    return s


@settings(max_examples=200, deadline=None)
@given(_values, st.lists(_q, min_size=1, max_size=10))
def test_quantiles_within_relative_error_of_exact(values: list[float], qs: list[float]) -> None:
    s = _sketch(values)
    for q in qs:
        exact = float(np.quantile(values, q, method="lower"))
        got = s.quantile(q)
        assert got is not None
        assert abs(got - exact) <= s.alpha * abs(exact) * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(_values, _values)
def test_merge_equals_sketch_of_concatenation(a: list[float], b: list[float]) -> None:
    merged = _sketch(a)
    merged.merge(_sketch(b))
    whole = _sketch(a + b)
    got, want = merged.to_dict(), whole.to_dict()
    assert got.pop("sum") == pytest.approx(want.pop("sum"), rel=1e-9, abs=1e-6)
    assert got == want
    qs = np.linspace(0, 1, 21)
    assert np.array_equal(merged.quantiles(qs), whole.quantiles(qs))


@settings(max_examples=100, deadline=None)
@given(_values)
def test_dict_roundtrip_is_exact_and_json_safe(values: list[float]) -> None:
    s = _sketch(values)
    d = json.loads(json.dumps(s.to_dict()))
    back = Sketch.from_dict(d)
    assert back.to_dict() == s.to_dict()
    assert back.quantile(0.5) == s.quantile(0.5)
    assert (back.count, back.min, back.max) == (len(values), min(values), max(values))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(_value, st.just(float("nan"))), min_size=1, max_size=100))
def test_one_by_one_equals_vectorized(values: list[float]) -> None:
    one = Sketch()
    for v in values:
        one.add(v)
    many = _sketch(values)
    assert (one.count, one.nonfinite, one.zero, one.min, one.max) == (
        many.count,
        many.nonfinite,
        many.zero,
        many.min,
        many.max,
    )
    qs = np.linspace(0, 1, 11)
    if many.count:
        # numpy's vectorized log may round differently from math.log at a bucket edge.
        assert np.allclose(one.quantiles(qs), many.quantiles(qs), rtol=3 * one.alpha, atol=0)


def test_merging_collapsed_sketches_stays_bounded() -> None:
    a, b = Sketch(max_bins=64), Sketch(max_bins=64)
    a.add_many(np.geomspace(1e-9, 1.0, 1000))
    b.add_many(np.geomspace(1e-3, 1e3, 1000))
    a.merge(b)
    assert a.count == 2000 and len(a.to_dict()["pos"]["keys"]) <= 64
    assert a.quantile(1.0) == 1e3
    assert a.quantile(0.99) == pytest.approx(np.geomspace(1e-3, 1e3, 1000)[979], rel=a.alpha)


def test_summary_figures_and_empty_sketch() -> None:
    empty = Sketch()
    assert (empty.quantile(0.5), empty.mean, empty.min, empty.max) == (None, None, None, None)
    s = _sketch([1.0, 2.0, 3.0, np.nan, np.inf])
    assert (s.count, s.nonfinite, s.sum, s.mean, s.min, s.max) == (3, 2, 6.0, 2.0, 1.0, 3.0)
    s.add(-5.0)
    assert s.quantile(0.0) == -5.0 and s.count == 4


def test_bucket_count_stays_bounded_and_high_quantiles_stay_accurate() -> None:
    values = np.geomspace(1e-300, 1e300, 20_000)
    s = Sketch(max_bins=256)
    for chunk in np.array_split(values, 7):
        s.add_many(chunk)
    assert len(s.to_dict()["pos"]["keys"]) <= 256
    # 256 buckets span gamma**256 ~ 160x: the top 0.1% (1e299.4..1e300) is still exact to alpha,
    # the lowest values were folded into the lowest kept bucket.
    exact = np.quantile(values, 0.999, method="lower")
    assert s.quantile(0.999) == pytest.approx(exact, rel=s.alpha)
    assert s.quantile(0.5) == pytest.approx(1e300 / s._gamma**255, rel=2 * s.alpha)
    assert s.count == 20_000 and s.min == 1e-300


def test_bin_counts_on_common_edges() -> None:
    s = _sketch([-3.0, 0.0, 1.0, 2.0, 10.0, 100.0])
    counts = s.bin_counts([0.5, 5.0, 50.0])
    assert counts.tolist() == [2, 2, 1, 1]
    assert s.bin_counts([]).tolist() == [6]


def test_invalid_input_is_refused() -> None:
    with pytest.raises(InvalidInput, match="alpha"):
        Sketch(alpha=1.5)
    with pytest.raises(InvalidInput, match="quantiles"):
        Sketch().quantile(1.5)
    a, b = Sketch(alpha=0.01), Sketch(alpha=0.02)
    with pytest.raises(InvalidInput, match="same alpha"):
        a.merge(b)
    d = _sketch([1.0, 2.0]).to_dict()
    d["count"] = 5
    with pytest.raises(InvalidInput, match="add up"):
        Sketch.from_dict(d)
    with pytest.raises(InvalidInput, match="not a sketch"):
        Sketch.from_dict({"alpha": 0.01})


def test_outputs_detect_numbers_and_labels() -> None:
    scores = OutputStats()
    scores.add(np.array([0.1, 0.9, 0.5]))
    assert scores.kind == "number" and scores.numbers.count == 3
    classes = OutputStats()
    classes.add(np.array([0, 1, 1, 2]))
    assert classes.kind == "label" and classes.labels == {"0": 1, "1": 2, "2": 1}
    words = OutputStats()
    words.add(["cat", "dog", "cat"])
    assert words.labels == {"cat": 2, "dog": 1}
    forced = OutputStats(kind="number")
    forced.add(np.array([1, 2, 3]))
    assert forced.numbers.mean == pytest.approx(2.0, rel=0.01)


def test_two_dimensional_outputs() -> None:
    binary = OutputStats()
    binary.add(np.array([[0.8, 0.2], [0.3, 0.7]]))
    assert binary.kind == "number"
    assert (binary.numbers.min, binary.numbers.max) == (0.2, 0.7)
    multi = OutputStats()
    multi.add(np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]]))
    assert multi.kind == "label" and multi.labels == {"2": 1, "0": 1, "1": 1}
    binary_labels = OutputStats(kind="label")
    binary_labels.add(np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]))
    assert binary_labels.labels == {"0": 1, "1": 2}
    with pytest.raises(InvalidInput, match="1-D or 2-D"):
        OutputStats().add(np.zeros((2, 2, 2)))


def test_labels_are_bounded_and_merge() -> None:
    out = OutputStats(max_labels=4)
    out.add(np.array(["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2 + ["e", "f"]))
    assert out.labels == {"a": 5, "b": 4, "c": 3, "d": 2, OTHER: 2}
    other = OutputStats(max_labels=4)
    other.add(["a", "z", "z"])
    out.merge(other)
    assert out.labels == {"a": 6, "b": 4, "c": 3, "d": 2, OTHER: 4}
    assert out.count == 19
    assert OutputStats.from_dict(json.loads(json.dumps(out.to_dict()))).labels == out.labels
    numbers = OutputStats()
    numbers.add([0.5])
    with pytest.raises(InvalidInput, match="cannot merge"):
        out.merge(numbers)


def test_window_counts_rejections_apart_from_errors() -> None:
    w = WindowStats()
    for i in range(96):
        w.record(10.0 + i, 4, predictions=np.full(4, 0.5))
    w.record(500.0, 4, status=503)
    w.record(1.0, 4, status=500)
    for _ in range(50):
        w.record(0.5, 1, status=422)
    assert (w.requests, w.errors, w.rejected, w.rows) == (98, 2, 50, 392)
    assert w.error_rate == pytest.approx(2 / 98)
    assert w.outputs.count == 384
    assert w.p99_ms == pytest.approx(
        np.quantile([*range(10, 106), 500, 1], 0.99, method="lower"), 0.01
    )
    assert w.batch_sizes.quantile(0.5) == pytest.approx(4, rel=0.01)
    assert WindowStats().error_rate == 0.0 and WindowStats().p99_ms is None


def test_window_merge_and_roundtrip() -> None:
    a, b = WindowStats(), WindowStats()
    a.record(5.0, 2, predictions=["x", "y"])
    b.record(7.0, 1, status=500)
    b.record(1.0, 1, status=400)
    a.merge(b)
    assert (a.requests, a.errors, a.rejected, a.rows) == (2, 1, 1, 3)
    back = WindowStats.from_dict(json.loads(json.dumps(a.to_dict())))
    assert back.to_dict() == a.to_dict()
    with pytest.raises(InvalidInput, match="window-stats"):
        WindowStats.from_dict({"requests": 1})
