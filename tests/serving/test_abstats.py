"""A/B tests against scipy and published reference values; mergeable moments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mlplane.errors import InvalidInput
from mlplane.serving.abstats import Moments, compare_means, compare_proportions


def test_proportions_match_the_chi_square_test() -> None:
    c = compare_proportions(100, 1000, 120, 1000)
    # Without continuity correction the 2x2 chi-square test is the pooled z-test squared.
    table = [[100, 900], [120, 880]]
    assert c.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)
    assert (c.a, c.b, c.difference) == pytest.approx((0.10, 0.12, 0.02))
    assert not c.significant
    assert c.ci_low < 0 < c.ci_high


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873, table II, method 10.
        ((48, 80), (56, 70), 0.0524, 0.3339),
        ((3, 10), (9, 10), 0.1705, 0.8090),
        ((0, 29), (5, 56), -0.0381, 0.1926),
    ],
)
def test_newcombe_interval_matches_published_values(
    a: tuple[int, int], b: tuple[int, int], low: float, high: float
) -> None:
    c = compare_proportions(*a, *b)
    assert (c.ci_low, c.ci_high) == pytest.approx((low, high), abs=6e-5)


def test_required_sample_for_ten_versus_twelve_percent() -> None:
    # Fleiss's formula, the textbook figure: 3841 per arm at alpha 0.05, power 0.8.
    c = compare_proportions(100, 1000, 120, 1000)
    assert c.required_n_per_variant == 3841 and not c.sample_size_ok
    big = compare_proportions(4000, 40_000, 4800, 40_000)
    assert big.required_n_per_variant == 3841 and big.sample_size_ok and big.significant
    assert big.mde < 0.02 < c.mde


def test_proportions_without_any_difference() -> None:
    for s in (0, 50):
        c = compare_proportions(s, 50, s, 50)
        assert c.p_value == 1.0 and not c.significant
        assert c.required_n_per_variant is None and not c.sample_size_ok


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10_000), st.integers(1, 10_000), st.data())
def test_proportion_p_values_and_intervals_are_sane(
    n_a: int, n_b: int, data: st.DataObject
) -> None:
    s_a, s_b = data.draw(st.integers(0, n_a)), data.draw(st.integers(0, n_b))
    c = compare_proportions(s_a, n_a, s_b, n_b)
    assert 0.0 <= c.p_value <= 1.0
    assert -1.0 <= c.ci_low <= c.difference <= c.ci_high <= 1.0
    assert json.loads(json.dumps(c.to_dict()))["n_a"] == n_a


def test_means_match_scipy_welch() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(10, 2, 300), rng.normal(10.6, 3, 200)
    c = compare_means(a.size, a.mean(), a.var(ddof=1), b.size, b.mean(), b.var(ddof=1))
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert c.significant and c.difference == pytest.approx(b.mean() - a.mean())


def test_means_hand_checked_case() -> None:
    c = compare_means(50, 100.0, 400.0, 50, 110.0, 400.0)
    ref = stats.ttest_ind_from_stats(100.0, 20.0, 50, 110.0, 20.0, 50, equal_var=False)
    assert c.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    # Equal n and variances: Welch's t is (110 - 100) / sqrt(2 * 400 / 50) = 2.5 on 98 df.
    assert c.p_value == pytest.approx(2 * stats.t.sf(2.5, 98), rel=1e-12)
    # (1.96 + 0.8416)^2 * 800 / 100 = 62.8 -> 63 per arm.
    assert c.required_n_per_variant == 63 and not c.sample_size_ok


def test_means_of_constant_samples() -> None:
    assert compare_means(5, 1.0, 0.0, 5, 1.0, 0.0).p_value == 1.0
    c = compare_means(5, 1.0, 0.0, 5, 2.0, 0.0)
    assert c.p_value == 0.0 and c.significant and (c.ci_low, c.ci_high) == (1.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 10**6),
    st.integers(2, 10**6),
    st.floats(-1e6, 1e6),
    st.floats(-1e6, 1e6),
    st.floats(0.0, 1e8),
    st.floats(0.0, 1e8),
)
def test_mean_p_values_are_in_unit_interval(
    n_a: int, n_b: int, m_a: float, m_b: float, v_a: float, v_b: float
) -> None:
    c = compare_means(n_a, m_a, v_a, n_b, m_b, v_b)
    assert 0.0 <= c.p_value <= 1.0
    assert c.ci_low <= c.difference <= c.ci_high


def test_invalid_arguments() -> None:
    with pytest.raises(InvalidInput, match="successes"):
        compare_proportions(11, 10, 1, 10)
    with pytest.raises(InvalidInput, match="n >= 1"):
        compare_proportions(0, 0, 1, 10)
    with pytest.raises(InvalidInput, match="alpha and power"):
        compare_proportions(1, 10, 1, 10, alpha=0)
    with pytest.raises(InvalidInput, match="variance"):
        compare_means(10, 0.0, -1.0, 10, 0.0, 1.0)
    with pytest.raises(InvalidInput, match="n >= 2"):
        compare_means(1, 0.0, 1.0, 10, 0.0, 1.0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), max_size=100),
    st.lists(st.floats(-1e6, 1e6), max_size=100),
)
def test_moments_merge_equals_numpy(a: list[float], b: list[float]) -> None:
    left, right = Moments(), Moments()
    left.add_many(a)
    right.add_many(b)
    left.merge(right)
    whole = np.array(a + b)
    assert left.n == whole.size
    if whole.size:
        assert left.mean == pytest.approx(whole.mean(), rel=1e-9, abs=1e-6)
    if whole.size > 1:
        assert left.variance == pytest.approx(whole.var(ddof=1), rel=1e-7, abs=1e-3)
    else:
        assert left.variance == 0.0


def test_moments_add_roundtrip_and_refusals() -> None:
    m = Moments()
    for v in (2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0):
        m.add(v)
    assert (m.n, m.mean, m.variance) == (8, 5.0, pytest.approx(32 / 7))
    back = Moments.from_dict(json.loads(json.dumps(m.to_dict())))
    assert (back.n, back.mean, back.variance) == (m.n, m.mean, m.variance)
    with pytest.raises(InvalidInput, match="finite"):
        m.add(math.nan)
    with pytest.raises(InvalidInput, match="moments"):
        Moments.from_dict({"n": -1, "mean": 0, "m2": 0})
