"""A/B statistics: is variant B different from A, and was the sample big enough to tell.

Both tests are two-sided. ``significant`` follows the test's p-value; the
confidence interval is for the difference ``b - a`` and can, at the margin,
disagree with the test (the Newcombe interval is not the z-test inverted).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from mlplane.errors import InvalidInput


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing variant B with variant A on one metric."""

    metric: str
    """``"proportion"`` or ``"mean"``."""
    a: float
    b: float
    difference: float
    """``b - a``."""
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    n_a: int
    n_b: int
    required_n_per_variant: int | None
    """Per-variant sample that detects the observed difference at the given power.

    None when there is no difference to detect."""
    sample_size_ok: bool
    """Both variants have at least ``required_n_per_variant``."""
    mde: float
    """Minimum detectable effect (absolute) at the current sample sizes and power."""
    alpha: float = 0.05
    power: float = 0.8

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(alpha: float, power: float) -> tuple[float, float]:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise InvalidInput(f"alpha and power must be in (0, 1), got {alpha} and {power}")
    return float(stats.norm.ppf(1 - alpha / 2)), float(stats.norm.ppf(power))


def _comparison(metric: str, a: float, b: float, **figures: Any) -> Comparison:
    required, n_a, n_b = figures["required_n_per_variant"], figures["n_a"], figures["n_b"]
    return Comparison(
        metric=metric,
        a=a,
        b=b,
        difference=b - a,
        significant=figures["p_value"] < figures["alpha"],
        sample_size_ok=required is not None and min(n_a, n_b) >= required,
        **figures,
    )


def _required(numerator: float, difference: float) -> int | None:
    # None when there is no difference, or one no sample could detect in a double.
    if difference == 0:
        return None
    n = numerator / difference / difference  # not / difference**2, which can underflow to 0
    return max(2, math.ceil(n)) if math.isfinite(n) else None


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def compare_proportions(
    successes_a: int,
    n_a: int,
    successes_b: int,
    n_b: int,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Comparison:
    """Two-proportion z-test (pooled) with a Newcombe hybrid-score interval for ``b - a``.

    The required sample uses the classic formula for two proportions (Fleiss),
    with the observed rates as the effect to detect.
    """
    for s, n, name in ((successes_a, n_a, "a"), (successes_b, n_b, "b")):
        if n < 1 or not 0 <= s <= n:
            raise InvalidInput(f"variant {name}: need n >= 1 and 0 <= successes <= n, got {s}/{n}")
    za, zb = _check(alpha, power)
    pa, pb = successes_a / n_a, successes_b / n_b
    diff = pb - pa
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    # se == 0 only when both rates are 0 or both are 1: no difference at all.
    p_value = 1.0 if se == 0 else float(2 * stats.norm.sf(abs(diff) / se))
    la, ua = _wilson(successes_a, n_a, za)
    lb, ub = _wilson(successes_b, n_b, za)
    ci_low = max(-1.0, diff - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2))
    ci_high = min(1.0, diff + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2))
    mean_p = (pa + pb) / 2
    root = za * math.sqrt(2 * mean_p * (1 - mean_p)) + zb * math.sqrt(pa * (1 - pa) + pb * (1 - pb))
    return _comparison(
        "proportion",
        pa,
        pb,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        n_a=n_a,
        n_b=n_b,
        required_n_per_variant=_required(root**2, diff),
        mde=(za + zb) * se,
        alpha=alpha,
        power=power,
    )


def compare_means(
    n_a: int,
    mean_a: float,
    var_a: float,
    n_b: int,
    mean_b: float,
    var_b: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> Comparison:
    """Welch's t-test from sufficient statistics (sample variances, ``ddof=1``).

    The required sample is the normal approximation
    ``(z_{1-alpha/2} + z_power)^2 (var_a + var_b) / difference^2``.
    """
    for n, var, name in ((n_a, var_a, "a"), (n_b, var_b, "b")):
        if n < 2 or not (math.isfinite(var) and var >= 0):
            raise InvalidInput(f"variant {name}: need n >= 2 and a finite variance >= 0")
    if not (math.isfinite(mean_a) and math.isfinite(mean_b)):
        raise InvalidInput("means must be finite numbers")
    za, zb = _check(alpha, power)
    diff = mean_b - mean_a
    va, vb = var_a / n_a, var_b / n_b
    se = math.sqrt(va + vb)
    if se == 0:  # both samples constant: the difference is exact
        p_value, half = (1.0 if diff == 0 else 0.0), 0.0
    else:
        # Welch-Satterthwaite on the shares of va + vb: squaring tiny variances underflows.
        ra, rb = va / (va + vb), vb / (va + vb)
        df = 1 / (ra**2 / (n_a - 1) + rb**2 / (n_b - 1))
        p_value = float(2 * stats.t.sf(abs(diff) / se, df))
        half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    return _comparison(
        "mean",
        mean_a,
        mean_b,
        ci_low=diff - half,
        ci_high=diff + half,
        p_value=p_value,
        n_a=n_a,
        n_b=n_b,
        required_n_per_variant=_required((za + zb) ** 2 * (var_a + var_b), diff),
        mde=(za + zb) * se,
        alpha=alpha,
        power=power,
    )


class Moments:
    """Running count, mean and sum of squared deviations, mergeable (Chan et al.).

    Non-finite values are refused: an outcome metric of NaN is a caller's bug.
    """

    def __init__(self, n: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.n, self.mean, self.m2 = n, mean, m2

    def add_many(self, values: Any) -> None:
        """Add every value of an array-like, vectorized."""
        a = np.asarray(values, dtype=np.float64).ravel()
        if a.size == 0:
            return
        if not np.isfinite(a).all():
            raise InvalidInput("values must be finite numbers")
        mean = float(a.mean())
        self.merge(Moments(int(a.size), mean, float(np.sum((a - mean) ** 2))))

    def add(self, value: float) -> None:
        self.add_many([value])

    def merge(self, other: Moments) -> None:
        """Add ``other``'s values into these (in place)."""
        n = self.n + other.n
        if n == 0:
            return
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.n * other.n / n
        self.mean += delta * other.n / n
        self.n = n

    @property
    def variance(self) -> float:
        """Sample variance (``ddof=1``); 0 with fewer than two values."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Moments:
        try:
            n, mean, m2 = int(d["n"]), float(d["mean"]), float(d["m2"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a moments dict: {exc}") from exc
        if n < 0 or m2 < 0:
            raise InvalidInput(f"not a moments dict: n and m2 must be >= 0, got {n} and {m2}")
        return cls(n, mean, m2)

    def __repr__(self) -> str:
        return f"Moments(n={self.n}, mean={self.mean}, variance={self.variance})"


__all__ = ["Comparison", "Moments", "compare_means", "compare_proportions"]
