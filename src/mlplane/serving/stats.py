"""Mergeable serving statistics: latency and output sketches per time window.

Every predict call updates a :class:`WindowStats` in memory; workers and
windows are combined with ``merge`` and stored with ``to_dict``. The quantile
sketch is DDSketch-style (Masson et al., VLDB 2019): logarithmic buckets give
every quantile a relative error of at most ``alpha``, whatever the scale, and
two sketches merge exactly by adding their bucket counts.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlplane.errors import InvalidInput

OTHER = "__other__"
"""The label that counts every label past an :class:`OutputStats`'s ``max_labels``."""


class _Store:
    """Bucket counts on a contiguous key range that never exceeds ``max_bins`` buckets.

    When it would, the lowest keys (the values nearest zero) are folded into the
    lowest kept bucket: for latencies and scores the high quantiles matter most.
    """

    def __init__(self, max_bins: int) -> None:
        self.max_bins = max_bins
        self.offset = 0  # the key of counts[0]
        self.counts = np.zeros(0, dtype=np.int64)

    def _cover(self, lo: int, hi: int) -> None:
        if self.counts.size:
            lo, hi = min(lo, self.offset), max(hi, self.offset + self.counts.size - 1)
        lo = max(lo, hi - self.max_bins + 1)
        if self.counts.size and lo == self.offset and hi == self.offset + self.counts.size - 1:
            return
        grown = np.zeros(hi - lo + 1, dtype=np.int64)
        if self.counts.size:
            keys = np.arange(self.offset, self.offset + self.counts.size) - lo
            np.add.at(grown, np.clip(keys, 0, None), self.counts)
        self.offset, self.counts = lo, grown

    def add(self, keys: np.ndarray, counts: np.ndarray | None = None) -> None:
        if keys.size == 0:
            return
        lo = int(keys.min())
        self._cover(lo, int(keys.max()))
        idx = keys - self.offset
        if lo < self.offset:  # keys below a collapsed range go to its lowest bucket
            idx = np.maximum(idx, 0)
        if counts is None:  # the hot path: bincount is much faster than add.at
            self.counts += np.bincount(idx, minlength=self.counts.size)
        else:
            np.add.at(self.counts, idx, counts)

    def add_one(self, key: int) -> None:
        i = key - self.offset
        if not (self.counts.size and 0 <= i < self.counts.size):
            self._cover(key, key)
            i = max(0, key - self.offset)
        self.counts[i] += 1

    def nonzero(self) -> tuple[np.ndarray, np.ndarray]:
        idx = np.flatnonzero(self.counts)
        return idx + self.offset, self.counts[idx]


class Sketch:
    """A quantile sketch with relative error ``alpha`` for any finite float.

    Non-finite values (NaN, infinities) are not placed; they are counted in
    ``nonfinite`` so a model that starts returning NaN still shows.

    Args:
        alpha: Relative accuracy of every quantile, in (0, 1).
        max_bins: Most buckets per sign; past that the values nearest zero lose accuracy.
    """

    def __init__(self, alpha: float = 0.01, max_bins: int = 2048) -> None:
        if not 0 < alpha < 1:
            raise InvalidInput(f"alpha must be in (0, 1), got {alpha}")
        if max_bins < 1:
            raise InvalidInput(f"max_bins must be at least 1, got {max_bins}")
        self.alpha, self.max_bins = float(alpha), int(max_bins)
        self._gamma = (1 + alpha) / (1 - alpha)
        self._log_gamma = math.log(self._gamma)
        # Below this the log would underflow; such values count as zero.
        self._min_indexable = sys.float_info.min * self._gamma
        self._pos, self._neg = _Store(max_bins), _Store(max_bins)
        self.zero = self.count = self.nonfinite = 0
        self.sum = 0.0
        self._min, self._max = math.inf, -math.inf

    def add(self, value: float) -> None:
        """Add one value (in plain Python: numpy's per-call overhead dominates for one)."""
        v = float(value)
        if not math.isfinite(v):
            self.nonfinite += 1
            return
        self.count += 1
        self.sum += v
        self._min, self._max = min(self._min, v), max(self._max, v)
        if v > self._min_indexable:
            self._pos.add_one(math.ceil(math.log(v) / self._log_gamma))
        elif v < -self._min_indexable:
            self._neg.add_one(math.ceil(math.log(-v) / self._log_gamma))
        else:
            self.zero += 1

    def add_many(self, values: Any) -> None:
        """Add every value of an array-like (any shape), vectorized."""
        a = np.asarray(values, dtype=np.float64).ravel()
        if a.size == 0:
            return
        lo, hi = float(a.min()), float(a.max())  # NaN if any is NaN
        if not (math.isfinite(lo) and math.isfinite(hi)):
            finite = np.isfinite(a)
            self.nonfinite += int(a.size - finite.sum())
            a = a[finite]
            if a.size == 0:
                return
            lo, hi = float(a.min()), float(a.max())
        self.count += int(a.size)
        self.sum += float(a.sum())
        self._min, self._max = min(self._min, lo), max(self._max, hi)
        if lo > self._min_indexable:  # the usual batch: all positive, no masks needed
            self._pos.add(self._keys(a))
            return
        pos, neg = a > self._min_indexable, a < -self._min_indexable
        self.zero += int(a.size - pos.sum() - neg.sum())
        self._pos.add(self._keys(a[pos]))
        self._neg.add(self._keys(-a[neg]))

    def _keys(self, magnitudes: np.ndarray) -> np.ndarray:
        return np.ceil(np.log(magnitudes) / self._log_gamma).astype(np.int64)

    def _value(self, keys: np.ndarray) -> np.ndarray:
        # The point of bucket (gamma^(k-1), gamma^k] within alpha of both ends.
        return 2.0 * np.power(self._gamma, keys.astype(np.float64)) / (self._gamma + 1.0)

    def merge(self, other: Sketch) -> None:
        """Add ``other``'s values into this sketch (in place)."""
        if (other.alpha, other.max_bins) != (self.alpha, self.max_bins):
            raise InvalidInput(
                "sketches merge only with the same alpha and max_bins: "
                f"{(self.alpha, self.max_bins)} vs {(other.alpha, other.max_bins)}"
            )
        self._pos.add(*other._pos.nonzero())
        self._neg.add(*other._neg.nonzero())
        self.zero += other.zero
        self.count += other.count
        self.nonfinite += other.nonfinite
        self.sum += other.sum
        self._min, self._max = min(self._min, other._min), max(self._max, other._max)

    @property
    def min(self) -> float | None:
        return self._min if self.count else None

    @property
    def max(self) -> float | None:
        return self._max if self.count else None

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None

    def buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """Each non-empty bucket's representative value and count, ascending by value."""
        nk, nc = self._neg.nonzero()
        pk, pc = self._pos.nonzero()
        values = np.concatenate([-self._value(nk[::-1]), [0.0], self._value(pk)])
        counts = np.concatenate([nc[::-1], [self.zero], pc])
        keep = counts > 0
        return values[keep], counts[keep]

    def quantiles(self, qs: Any) -> np.ndarray:
        """The lower ``q``-quantile for each ``q`` in ``qs`` (NaN when empty)."""
        q = np.asarray(qs, dtype=np.float64)
        if np.any((q < 0) | (q > 1)) or np.any(np.isnan(q)):
            raise InvalidInput(f"quantiles must be in [0, 1], got {qs}")
        if not self.count:
            return np.full(q.shape, np.nan)
        values, counts = self.buckets()
        # Rank q*(n-1), rounded down: numpy's quantile(method="lower").
        idx = np.searchsorted(np.cumsum(counts), q * (self.count - 1), side="right")
        return np.clip(values[np.minimum(idx, values.size - 1)], self._min, self._max)

    def quantile(self, q: float) -> float | None:
        """The lower ``q``-quantile, within ``alpha`` relative error; None when empty."""
        value = float(self.quantiles([q])[0])
        return None if math.isnan(value) else value

    def bin_counts(self, cuts: Any) -> np.ndarray:
        """Counts on the bins ``(-inf, c0), [c0, c1), ..., [c_last, inf)`` of sorted ``cuts``."""
        values, counts = self.buckets()
        idx = np.searchsorted(np.asarray(cuts, dtype=np.float64), values, side="right")
        return np.bincount(idx, weights=counts, minlength=len(cuts) + 1).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict with only the non-empty buckets."""

        def store(s: _Store) -> dict[str, list[int]]:
            keys, counts = s.nonzero()
            return {"keys": keys.tolist(), "counts": counts.tolist()}

        return {
            "alpha": self.alpha,
            "max_bins": self.max_bins,
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "zero": self.zero,
            "nonfinite": self.nonfinite,
            "pos": store(self._pos),
            "neg": store(self._neg),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sketch:
        """The sketch that :meth:`to_dict` described; raises InvalidInput if malformed."""
        try:
            sk = cls(alpha=float(d["alpha"]), max_bins=int(d["max_bins"]))
            for name, target in (("pos", sk._pos), ("neg", sk._neg)):
                keys = np.asarray(d[name]["keys"], dtype=np.int64)
                counts = np.asarray(d[name]["counts"], dtype=np.int64)
                if keys.shape != counts.shape or keys.ndim != 1 or np.any(counts < 0):
                    raise ValueError(f"{name}: keys and counts must be equal-length lists")
                target.add(keys, counts)
            sk.zero, sk.count = int(d["zero"]), int(d["count"])
            sk.nonfinite, sk.sum = int(d.get("nonfinite", 0)), float(d["sum"])
            if sk.count:
                sk._min, sk._max = float(d["min"]), float(d["max"])
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(f"not a sketch dict: {exc}") from exc
        if sk.zero + int(sk._pos.counts.sum() + sk._neg.counts.sum()) != sk.count:
            raise InvalidInput("not a sketch dict: bucket counts do not add up to count")
        return sk

    def __repr__(self) -> str:
        return f"Sketch(alpha={self.alpha}, count={self.count})"


LABEL, NUMBER = "label", "number"


class OutputStats:
    """The distribution of a model's predictions: a :class:`Sketch` or a bounded label count.

    A batch's kind is detected from its dtype unless given: floats are numbers;
    integers, bools, strings and objects are labels (a classifier's classes).
    The first non-empty batch fixes the kind and later batches are read as that kind.
    A 2-D batch is reduced to one value per row first: one column is that column,
    two columns (binary ``predict_proba``) the last column, the positive-class
    probability (or the argmax class when the kind is ``"label"``), more columns
    the argmax class index, a label.

    Args:
        kind: ``"label"``, ``"number"``, or None to detect it from the first batch.
        max_labels: Most distinct labels kept; later ones count under ``"__other__"``.
    """

    def __init__(self, kind: str | None = None, *, max_labels: int = 64) -> None:
        if kind not in (None, LABEL, NUMBER):
            raise InvalidInput(f"kind must be 'label', 'number' or None, got {kind!r}")
        self.kind, self.max_labels = kind, max_labels
        self.numbers = Sketch()
        self.labels: dict[str, int] = {}

    @property
    def count(self) -> int:
        """How many predictions were counted (non-finite numbers included)."""
        return self.numbers.count + self.numbers.nonfinite + sum(self.labels.values())

    def add(self, predictions: Any) -> None:
        """Count the predictions of one batch; raises InvalidInput for a shape it cannot read."""
        a = np.asarray(predictions)
        if a.ndim == 2:
            if a.dtype.kind not in "biuf":
                raise InvalidInput(f"2-D predictions must be numeric, got dtype {a.dtype}")
            if a.shape[1] == 1:
                a = a[:, 0]
            elif a.shape[1] == 2 and self.kind != LABEL:
                a = a[:, 1]
            else:
                a = a.argmax(axis=1)
        elif a.ndim > 2:
            raise InvalidInput(f"predictions must be 1-D or 2-D, got shape {a.shape}")
        a = a.ravel()  # a 0-d scalar becomes one prediction
        if a.size == 0:
            return
        if self.kind is None:
            self.kind = NUMBER if a.dtype.kind == "f" else LABEL
        if self.kind == NUMBER:
            try:
                self.numbers.add_many(a)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(
                    f"predictions are not numbers ({exc}); use kind='label'"
                ) from exc
        else:
            values, counts = np.unique(a.astype(str), return_counts=True)
            self._count_labels(zip(values.tolist(), counts.tolist(), strict=True))

    def _count_labels(self, items: Any) -> None:
        # Most frequent first, so a full counter keeps the labels that matter.
        for label, n in sorted(items, key=lambda kv: (-kv[1], kv[0])):
            if label in self.labels or len(self.labels) - (OTHER in self.labels) < self.max_labels:
                self.labels[label] = self.labels.get(label, 0) + n
            else:
                self.labels[OTHER] = self.labels.get(OTHER, 0) + n

    def merge(self, other: OutputStats) -> None:
        """Add ``other``'s predictions into these (in place); the kinds must agree."""
        if other.kind is not None and self.kind is not None and other.kind != self.kind:
            raise InvalidInput(f"cannot merge {other.kind} outputs into {self.kind} outputs")
        self.kind = self.kind or other.kind
        self.numbers.merge(other.numbers)
        self._count_labels(other.labels.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "max_labels": self.max_labels,
            "numbers": self.numbers.to_dict(),
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputStats:
        try:
            out = cls(d.get("kind"), max_labels=int(d.get("max_labels", 64)))
            out.numbers = Sketch.from_dict(d["numbers"])
            out.labels = {str(k): int(v) for k, v in d.get("labels", {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"not an output-stats dict: {exc}") from exc
        return out


@dataclass
class WindowStats:
    """One time window of one model version of one deployment.

    ``requests`` counts the requests that reached the model (answered 2xx or
    5xx); ``rejected`` ones (4xx: bad input, refused) are counted apart and add
    nothing else, so a client sending garbage cannot make a version look broken.
    """

    requests: int = 0
    errors: int = 0
    rejected: int = 0
    rows: int = 0
    latency_ms: Sketch = field(default_factory=Sketch)
    outputs: OutputStats = field(default_factory=OutputStats)
    batch_sizes: Sketch = field(default_factory=Sketch)

    def record(
        self, latency_ms: float, n_rows: int = 0, *, status: int = 200, predictions: Any = None
    ) -> None:
        """Count one predict request.

        Args:
            latency_ms: How long the request took, in milliseconds.
            n_rows: Rows in the request's batch.
            status: The HTTP status answered: 5xx is an error, 4xx a rejection.
            predictions: What the model returned, counted in ``outputs`` when given.
        """
        if 400 <= status < 500:
            self.rejected += 1
            return
        self.requests += 1
        self.errors += status >= 500
        self.rows += n_rows
        self.latency_ms.add(latency_ms)
        self.batch_sizes.add(n_rows)
        if predictions is not None:
            self.outputs.add(predictions)

    @property
    def error_rate(self) -> float:
        """Errors per request that reached the model; 0 when there were none."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float | None:
        return self.latency_ms.quantile(0.99)

    def merge(self, other: WindowStats) -> None:
        """Add ``other`` into this window (in place): another worker's or the next window."""
        self.requests += other.requests
        self.errors += other.errors
        self.rejected += other.rejected
        self.rows += other.rows
        self.latency_ms.merge(other.latency_ms)
        self.outputs.merge(other.outputs)
        self.batch_sizes.merge(other.batch_sizes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rejected": self.rejected,
            "rows": self.rows,
            "latency_ms": self.latency_ms.to_dict(),
            "outputs": self.outputs.to_dict(),
            "batch_sizes": self.batch_sizes.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowStats:
        try:
            return cls(
                requests=int(d["requests"]),
                errors=int(d["errors"]),
                rejected=int(d.get("rejected", 0)),
                rows=int(d.get("rows", 0)),
                latency_ms=Sketch.from_dict(d["latency_ms"]),
                outputs=OutputStats.from_dict(d["outputs"]),
                batch_sizes=Sketch.from_dict(d["batch_sizes"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a window-stats dict: {exc}") from exc


__all__ = ["OTHER", "OutputStats", "Sketch", "WindowStats"]
