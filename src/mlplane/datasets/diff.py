"""What changed between two versions, computed from their stored profiles alone.

Files are compared by digest. For table files present in both, the schema
(columns added, removed, retyped), the row count and every column's statistics
are compared; distribution shift is measured with the population stability
index (PSI): numeric columns by re-binning the newer histogram onto the older
one's bin edges (uniform mass within a bin), categorical columns over the
older version's top values plus an "other" bucket. No data is read, so a diff
of two terabyte versions costs two metadata lookups.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mlplane.datasets.entities import DatasetVersion
from mlplane.datasets.profile import ColumnProfile, TableProfile

PSI_DRIFT = 0.2
"""The usual rule of thumb: below 0.1 stable, 0.1 to 0.2 moderate, above 0.2 shifted."""
_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class ColumnChange:
    column: str
    change: str
    """``added``, ``removed``, ``type`` (retyped) or ``stats`` (same type, values shifted)."""
    before: str | None = None
    after: str | None = None
    shifts: dict[str, list[float | None]] = field(default_factory=dict)
    """Statistic name → [before, after], for the statistics that moved."""
    psi: float | None = None
    drifted: bool = False


@dataclass(frozen=True, slots=True)
class TableDiff:
    path: str
    rows_before: int
    rows_after: int
    columns: list[ColumnChange]


@dataclass(frozen=True, slots=True)
class VersionDiff:
    before: str
    after: str
    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: int
    size_before: int
    size_after: int
    tables: list[TableDiff]

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff_versions(a: DatasetVersion, b: DatasetVersion) -> VersionDiff:
    """Compare version ``a`` (before) with ``b`` (after)."""
    fa = {f.path: f for f in a.files}
    fb = {f.path: f for f in b.files}
    changed = sorted(p for p in fa.keys() & fb.keys() if fa[p].digest != fb[p].digest)
    tables = []
    for path in sorted(fa.keys() & fb.keys()):
        pa_, pb_ = fa[path].profile, fb[path].profile
        if pa_ is not None and pb_ is not None and fa[path].digest != fb[path].digest:
            tables.append(diff_profiles(path, pa_, pb_))
    return VersionDiff(
        before=a.ref,
        after=b.ref,
        added=sorted(fb.keys() - fa.keys()),
        removed=sorted(fa.keys() - fb.keys()),
        changed=changed,
        unchanged=len(fa.keys() & fb.keys()) - len(changed),
        size_before=a.size,
        size_after=b.size,
        tables=tables,
    )


def diff_profiles(path: str, a: TableProfile, b: TableProfile) -> TableDiff:
    ca = {c.name: c for c in a.columns}
    cb = {c.name: c for c in b.columns}
    out: list[ColumnChange] = []
    for name in [c.name for c in a.columns if c.name not in cb]:
        out.append(ColumnChange(name, "removed", before=ca[name].type))
    for name in [c.name for c in b.columns if c.name not in ca]:
        out.append(ColumnChange(name, "added", after=cb[name].type))
    for col in b.columns:
        old = ca.get(col.name)
        if old is None:
            continue
        if old.type != col.type:
            out.append(ColumnChange(col.name, "type", before=old.type, after=col.type))
            continue
        change = _stats_change(old, col)
        if change is not None:
            out.append(change)
    return TableDiff(path=path, rows_before=a.rows, rows_after=b.rows, columns=out)


def _null_fraction(c: ColumnProfile) -> float:
    total = c.count + c.nulls
    return c.nulls / total if total else 0.0


def _stats_change(a: ColumnProfile, b: ColumnProfile) -> ColumnChange | None:
    shifts: dict[str, list[float | None]] = {}

    def note(key: str, x: float | None, y: float | None, rel: float = 1e-9) -> None:
        if x is None and y is None:
            return
        if x is None or y is None or abs(x - y) > rel * max(abs(x), abs(y), 1.0):
            shifts[key] = [x, y]

    note("null_fraction", _null_fraction(a), _null_fraction(b))
    note("distinct", float(a.distinct), float(b.distinct), rel=0.02)  # HLL error is ~1 %
    if a.mean is not None or b.mean is not None:
        note("mean", a.mean, b.mean)
        note("std", a.std, b.std)
        for q in ("0.5",):
            note(f"p{int(float(q) * 100)}", a.quantiles.get(q), b.quantiles.get(q))
        if isinstance(a.min, float | int) and isinstance(b.min, float | int):
            note("min", float(a.min), float(b.min))
        if isinstance(a.max, float | int) and isinstance(b.max, float | int):
            note("max", float(a.max), float(b.max))
        psi = _numeric_psi(a, b)
    else:
        psi = _categorical_psi(a, b)
    if not shifts and (psi is None or psi < 1e-4):
        return None
    return ColumnChange(
        a.name,
        "stats",
        before=a.type,
        after=b.type,
        shifts=shifts,
        psi=psi,
        drifted=psi is not None and psi > PSI_DRIFT,
    )


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two probability vectors over the same buckets."""
    p = np.clip(np.asarray(expected, dtype=float), _EPS, None)
    q = np.clip(np.asarray(actual, dtype=float), _EPS, None)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def _numeric_psi(a: ColumnProfile, b: ColumnProfile) -> float | None:
    ha, hb = a.histogram, b.histogram
    if not ha or not hb or sum(ha["counts"]) == 0 or sum(hb["counts"]) == 0:
        return None
    edges = np.asarray(ha["edges"], dtype=float)
    if len(edges) < 3:  # a constant column: compare the mass at that value
        return None
    # Widen the outer bins so mass outside the old range is counted, not lost.
    edges = edges.copy()
    edges[0], edges[-1] = -math.inf, math.inf
    mass_b = _rebin(np.asarray(hb["edges"], float), np.asarray(hb["counts"], float), edges)
    return psi(np.asarray(ha["counts"], float), mass_b)


def _rebin(src_edges: np.ndarray, counts: np.ndarray, dst_edges: np.ndarray) -> np.ndarray:
    """Mass of a histogram in other bins, assuming uniform mass within each source bin."""
    if len(src_edges) < 2 or src_edges[-1] <= src_edges[0]:
        # Constant column: all its mass sits at one point.
        at = src_edges[0] if len(src_edges) else 0.0
        idx = int(np.clip(np.searchsorted(dst_edges, at, side="right") - 1, 0, len(dst_edges) - 2))
        out = np.zeros(len(dst_edges) - 1)
        out[idx] = counts.sum()
        return out
    cdf = np.concatenate([[0.0], np.cumsum(counts)])
    clipped = np.clip(dst_edges, src_edges[0], src_edges[-1])
    at = np.interp(clipped, src_edges, cdf)
    return np.diff(at)


def _categorical_psi(a: ColumnProfile, b: ColumnProfile) -> float | None:
    if not a.top or not a.count or not b.count:
        return None
    keys = [v for v, _ in a.top]
    pa_ = np.array([n for _, n in a.top], float) / a.count
    tb = dict(b.top)
    pb_ = np.array([tb.get(k, 0) for k in keys], float) / b.count
    # Values outside the old top list: the rest of each distribution.
    pa_ = np.append(pa_, max(0.0, 1.0 - pa_.sum()))
    pb_ = np.append(pb_, max(0.0, 1.0 - pb_.sum()))
    return psi(pa_, pb_)
