"""The diff page's content: :func:`mlplane.datasets.diff.diff_versions` (files, schema,
shifts) plus what a page adds to it: every shared column's before/after statistics and
one numeric column's two histograms on common bins, all from the stored profiles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlplane.datasets.diff import TableDiff, VersionDiff, diff_versions
from mlplane.datasets.entities import DatasetVersion
from mlplane.datasets.profile_data import ColumnProfile
from mlplane.ui.pages._datasets_view import bin_labels, is_numeric, raw_pii

BINS = 20


@dataclass
class ColumnDelta:
    """One column present in both versions: its statistics before and after."""

    name: str
    type_before: str
    type_after: str
    stats: dict[str, tuple[Any, Any]]
    """Statistic (mean, nulls, distinct) → (before, after)."""

    @property
    def changed(self) -> bool:
        return self.type_before != self.type_after or any(a != b for a, b in self.stats.values())


@dataclass
class TableDelta:
    path: str
    rows_before: int
    rows_after: int
    schema: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(column, change, type before, type after): added, removed, type."""
    columns: list[ColumnDelta] = field(default_factory=list)
    shifts: TableDiff | None = None
    numeric: list[str] = field(default_factory=list)
    """Numeric columns in both versions (and free of raw PII): the histogram's choices."""


@dataclass
class DiffView:
    diff: VersionDiff
    tables: list[TableDelta]
    chart: dict[str, Any] | None
    chart_table: str | None
    chart_column: str | None


def _stats(a: ColumnProfile, b: ColumnProfile) -> dict[str, tuple[Any, Any]]:
    out: dict[str, tuple[Any, Any]] = {}
    if a.mean is not None or b.mean is not None:
        out["mean"] = (a.mean, b.mean)
    out["nulls"] = (a.nulls, b.nulls)
    out["distinct"] = (a.distinct, b.distinct)
    return out


def _table(path: str, a: DatasetVersion, b: DatasetVersion) -> TableDelta | None:
    fa = next((f for f in a.files if f.path == path), None)
    fb = next((f for f in b.files if f.path == path), None)
    if fa is None or fb is None or fa.profile is None or fb.profile is None:
        return None
    pa_, pb_ = fa.profile, fb.profile
    ca, cb = {c.name: c for c in pa_.columns}, {c.name: c for c in pb_.columns}
    out = TableDelta(path, pa_.rows, pb_.rows)
    for c in pa_.columns:
        if c.name not in cb:
            out.schema.append((c.name, "removed", c.type, ""))
    for c in pb_.columns:
        if c.name not in ca:
            out.schema.append((c.name, "added", "", c.type))
        elif ca[c.name].type != c.type:
            out.schema.append((c.name, "type", ca[c.name].type, c.type))
    hidden = raw_pii(fa) | raw_pii(fb)
    for c in pb_.columns:
        old = ca.get(c.name)
        if old is None:
            continue
        out.columns.append(ColumnDelta(c.name, old.type, c.type, _stats(old, c)))
        plottable = is_numeric(old) and is_numeric(c) and c.name not in hidden
        if plottable and old.histogram.get("counts") and c.histogram.get("counts"):
            out.numeric.append(c.name)
    return out


def rebin(edges: list[float], counts: list[float], dst: np.ndarray) -> list[float]:
    """A histogram's rows in other bins, spreading each bin's rows evenly over its range
    (what a stored histogram can tell; the data is not read again)."""
    src = np.asarray(edges, dtype=float)
    mass = np.asarray(counts, dtype=float)
    if len(src) < 2 or src[-1] <= src[0]:  # a constant column: all its rows at one value
        idx = int(np.clip(np.searchsorted(dst, src[0], side="right") - 1, 0, len(dst) - 2))
        out = np.zeros(len(dst) - 1)
        out[idx] = mass.sum()
        return [float(x) for x in out]
    cdf = np.concatenate([[0.0], np.cumsum(mass)])
    at = np.interp(np.clip(dst, src[0], src[-1]), src, cdf)
    return [round(float(x), 1) for x in np.diff(at)]


def overlay(
    column: str, a: ColumnProfile, b: ColumnProfile, label_a: str, label_b: str
) -> dict[str, Any]:
    """Both versions' histograms of ``column`` as one bars chart over shared bins."""
    ea, eb = a.histogram["edges"], b.histogram["edges"]
    lo, hi = min(ea[0], eb[0]), max(ea[-1], eb[-1])
    dst = np.linspace(lo, hi, BINS + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])
    labels = bin_labels([float(x) for x in dst])
    return {
        "kind": "bars",
        "title": f"{column}: rows per bin",
        "labels": labels,
        "series": [
            {"label": label_a, "y": rebin(ea, a.histogram["counts"], dst)},
            {"label": label_b, "y": rebin(eb, b.histogram["counts"], dst)},
        ],
    }


def build(a: DatasetVersion, b: DatasetVersion, column: str | None) -> DiffView:
    """The diff of ``a`` (before) and ``b`` (after); ``column`` picks the histogram
    (``path:column`` or a bare column name; default: the first numeric column)."""
    d = diff_versions(a, b)
    shifts = {t.path: t for t in d.tables}
    both = sorted({f.path for f in a.files} & {f.path for f in b.files})
    tables = [t for t in (_table(p, a, b) for p in both) if t is not None]
    for t in tables:
        t.shifts = shifts.get(t.path)
    chart = chart_table = chart_column = None
    wanted_table, _, wanted_col = (column or "").rpartition(":")
    for t in tables:
        if wanted_table and wanted_table != t.path:
            continue
        if not t.numeric or (wanted_col and wanted_col not in t.numeric):
            continue
        pick = wanted_col or t.numeric[0]
        pa_ = next(f.profile for f in a.files if f.path == t.path)
        pb_ = next(f.profile for f in b.files if f.path == t.path)
        assert pa_ is not None and pb_ is not None
        chart = overlay(pick, pa_.column(pick), pb_.column(pick), a.ref, b.ref)
        chart_table, chart_column = t.path, pick
        break
    if chart is None and column:
        # A column no table holds: the first numeric one instead, as without a choice.
        return build(a, b, None)
    return DiffView(d, tables, chart, chart_table, chart_column)
