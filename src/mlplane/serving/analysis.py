"""Automated canary analysis: compare a canary's window with the stable version's.

:func:`judge` turns two :class:`~mlplane.serving.stats.WindowStats` and a set of
:class:`CanaryThresholds` into a verdict the rollout controller acts on:
``"fail"`` as soon as one conclusive check is breached, ``"inconclusive"``
while there is too little traffic to tell, ``"pass"`` otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlplane.errors import InvalidInput
from mlplane.serving.stats import OutputStats, WindowStats

METHODS = ("psi", "js")
PSI_EPSILON = 1e-4
"""Stands in for an empty bin's share, so PSI stays finite (the usual choice)."""


def _number_bins(stable: OutputStats, canary: OutputStats, bins: int) -> tuple[Any, Any]:
    # Cuts at the stable side's buckets holding its min, its quantiles and its max,
    # so a canary beyond the stable range lands in bins of its own.
    values, counts = stable.numbers.buckets()
    cuts = np.array([0.0])  # when the stable side has only NaN outputs
    if values.size:
        ranks = np.linspace(0, 1, bins + 1) * (counts.sum() - 1)
        cuts = np.unique(values[np.searchsorted(np.cumsum(counts), ranks, side="right")])
    out = []
    for side in (stable, canary):
        values, counts = side.numbers.buckets()
        # A value equal to a cut gets a bin of its own: a stable version with few
        # distinct outputs (a constant, a rounded score) is otherwise one wide bin
        # that a shifted canary can fall into unnoticed.
        pos = np.searchsorted(cuts, values, side="left")
        on_cut = (pos < cuts.size) & (cuts[np.minimum(pos, cuts.size - 1)] == values)
        idx = 2 * pos + on_cut
        hist = np.bincount(idx, weights=counts, minlength=2 * cuts.size + 1)
        nonfinite = side.numbers.nonfinite  # NaN outputs are a bin of their own too
        out.append(np.append(hist, nonfinite))
    return out[0], out[1]


def _label_bins(stable: OutputStats, canary: OutputStats) -> tuple[Any, Any]:
    labels = sorted(set(stable.labels) | set(canary.labels))
    return (
        np.array([stable.labels.get(k, 0) for k in labels], dtype=np.float64),
        np.array([canary.labels.get(k, 0) for k in labels], dtype=np.float64),
    )


def distribution_shift(
    stable: OutputStats, canary: OutputStats, *, method: str = "psi", bins: int = 10
) -> float | None:
    """How far the canary's predictions moved from the stable version's.

    Numbers are binned on the stable side's ``bins`` quantiles (read from its
    sketch, with its min and max, so values beyond the stable range have bins
    of their own), labels on the union of both sides' labels. Outputs of different
    kinds (numbers against labels) count as disjoint.

    Args:
        stable: The reference distribution.
        canary: The distribution under test.
        method: ``"psi"`` (population stability index: 0 for identical, > 0.25
            is usually read as a major shift) or ``"js"`` (Jensen-Shannon
            distance, base 2: 0 identical, 1 disjoint).
        bins: Quantile bins for numeric outputs.

    Returns:
        The shift, or None when either side has no predictions.
    """
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {METHODS}, got {method!r}")
    if bins < 1:
        raise InvalidInput(f"bins must be at least 1, got {bins}")
    if stable.count == 0 or canary.count == 0:
        return None
    if stable.kind != canary.kind:
        p, q = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    elif stable.kind == "number":
        p, q = _number_bins(stable, canary, bins)
    else:
        p, q = _label_bins(stable, canary)
    p, q = p / p.sum(), q / q.sum()
    if method == "psi":
        p, q = np.maximum(p, PSI_EPSILON), np.maximum(q, PSI_EPSILON)
        return float(np.sum((q - p) * np.log(q / p)))
    m = (p + q) / 2

    def kl(a: Any) -> float:
        nz = a > 0  # 0 log 0 = 0; m > 0 wherever a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(min(1.0, math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))))


@dataclass(frozen=True)
class CanaryThresholds:
    """What a canary must stay within; a threshold left None is not checked.

    Args:
        max_error_rate: Most server errors (5xx) per request, e.g. ``0.01``.
        max_p99_ms: Highest p99 latency in milliseconds.
        max_prediction_shift: Largest :func:`distribution_shift` from stable.
        shift_method: ``"psi"`` or ``"js"``.
        min_requests: Fewer requests than this (on the canary, and on stable for
            the checks that compare with it) make a check inconclusive.
        max_p99_ratio: Canary p99 at most this times the stable p99.
    """

    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    max_prediction_shift: float | None = None
    shift_method: str = "psi"
    min_requests: int = 50
    max_p99_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.shift_method not in METHODS:
            raise InvalidInput(f"shift_method must be one of {METHODS}, got {self.shift_method!r}")
        if self.min_requests < 1:
            raise InvalidInput(f"min_requests must be at least 1, got {self.min_requests}")
        for name in ("max_error_rate", "max_p99_ms", "max_prediction_shift", "max_p99_ratio"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise InvalidInput(f"{name} must be a finite number >= 0 or None, got {value}")


@dataclass(frozen=True)
class CanaryCheck:
    """The verdict on one canary window, with the figures it was based on."""

    verdict: str
    breaches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Why a check was inconclusive."""
    stable_requests: int = 0
    stable_errors: int = 0
    stable_error_rate: float = 0.0
    stable_p99_ms: float | None = None
    canary_requests: int = 0
    canary_errors: int = 0
    canary_error_rate: float = 0.0
    canary_p99_ms: float | None = None
    shift: float | None = None
    shift_method: str = "psi"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def judge(stable: WindowStats, canary: WindowStats, thresholds: CanaryThresholds) -> CanaryCheck:
    """Judge a canary window against the stable version's window of the same time."""
    t, breaches, notes = thresholds, [], []
    shift = distribution_shift(stable.outputs, canary.outputs, method=t.shift_method)
    s_p99, c_p99 = stable.p99_ms, canary.p99_ms
    canary_ok = canary.requests >= t.min_requests
    stable_ok = stable.requests >= t.min_requests
    if not canary_ok:
        notes.append(f"canary has {canary.requests} requests, fewer than {t.min_requests}")
    if canary_ok and t.max_error_rate is not None and canary.error_rate > t.max_error_rate:
        breaches.append(f"error rate {canary.error_rate:.1%} > {t.max_error_rate:.1%}")
    if canary_ok and t.max_p99_ms is not None and c_p99 is not None and c_p99 > t.max_p99_ms:
        breaches.append(f"p99 latency {c_p99:.1f} ms > {t.max_p99_ms:.1f} ms")
    needs_stable = t.max_p99_ratio is not None or t.max_prediction_shift is not None
    if canary_ok and needs_stable and not stable_ok:
        notes.append(f"stable has {stable.requests} requests, fewer than {t.min_requests}")
    compare = canary_ok and stable_ok
    if compare and t.max_p99_ratio is not None and c_p99 is not None and s_p99 is not None:
        limit = t.max_p99_ratio * s_p99
        if c_p99 > limit:
            breaches.append(
                f"p99 latency {c_p99:.1f} ms > {t.max_p99_ratio:g} x stable p99 "
                f"{s_p99:.1f} ms = {limit:.1f} ms"
            )
    if compare and t.max_prediction_shift is not None:
        if shift is None:
            notes.append("no predictions recorded on one side; prediction shift unknown")
        elif shift > t.max_prediction_shift:
            breaches.append(
                f"prediction shift ({t.shift_method}) {shift:.3f} > {t.max_prediction_shift:.3f}"
            )
    verdict = "fail" if breaches else "inconclusive" if notes else "pass"
    return CanaryCheck(
        verdict=verdict,
        breaches=breaches,
        notes=notes,
        stable_requests=stable.requests,
        stable_errors=stable.errors,
        stable_error_rate=stable.error_rate,
        stable_p99_ms=s_p99,
        canary_requests=canary.requests,
        canary_errors=canary.errors,
        canary_error_rate=canary.error_rate,
        canary_p99_ms=c_p99,
        shift=shift,
        shift_method=t.shift_method,
    )


__all__ = ["CanaryCheck", "CanaryThresholds", "distribution_shift", "judge"]
