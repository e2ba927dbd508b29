"""What the dataset pages show, built from stored metadata only: profiles, PII reports,
contract results and manifests. No page reads a version's data, so a terabyte version
costs the same few lookups as a small one."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from mlplane.datasets.entities import DatasetFile, DatasetVersion
from mlplane.datasets.profile_data import ColumnProfile, TableProfile

HIDDEN = "•••• (PII, hidden)"
"""What the page shows in place of a value of a column with unhandled PII."""
TRANSFORMED = frozenset({"mask", "hash", "drop"})
"""Actions after which the stored values (and so the profile's) no longer hold the PII."""
LABEL = 18
"""Characters of a value under a bar (the rest elided): the bars share a card's width."""
PII_LIST_FILES = 200
"""The list page reads file reports (for its PII badge) only of versions with at most this
many files: the report lives on the file rows, and a version can list 100,000 of them."""


def pii_columns(v: DatasetVersion) -> dict[str, str]:
    """Column → action for every column a file's PII report names with findings."""
    out: dict[str, str] = {}
    for f in v.files:
        if f.pii is None:
            continue
        for c in f.pii.columns:
            if c.rows or c.name_hint:
                prior = out.get(c.column)
                # Any file that left the column raw makes the column raw.
                out[c.column] = c.action if prior is None or prior in TRANSFORMED else prior
    return out


def raw_pii(f: DatasetFile) -> set[str]:
    """Columns of ``f`` whose profile holds PII as found: values the page must not show.
    Under mask, hash or drop the profile was computed over the transformed values."""
    if f.pii is None:
        return set()
    return {
        c.column for c in f.pii.columns if (c.rows or c.name_hint) and c.action not in TRANSFORMED
    }


def quality_badge(v: DatasetVersion) -> tuple[str, str]:
    """(label, status class) of a version's contract verdict. A failed blocking expectation
    stores nothing, so a stored version shows pass, or warn when a warning failed."""
    q = v.quality
    if q is None:
        return "no contract", "none"
    if not q.passed:
        return "fail", "fail"
    if q.warnings:
        return f"warn ({len(q.warnings)})", "warn"
    return "pass", "pass"


def is_numeric(c: ColumnProfile) -> bool:
    return c.mean is not None


def bin_labels(edges: list[float]) -> list[str]:
    """``lo to hi`` per bin, with as many decimals as the bin width needs and no more: the
    labels must fit under bars a chart's width shares among twenty bins."""
    if len(edges) < 2:
        return []
    width = (edges[-1] - edges[0]) / (len(edges) - 1)
    decimals = max(0, 1 - math.floor(math.log10(width))) if width > 0 else 0

    def text(x: float) -> str:
        out = f"{x:.{decimals}f}"
        return out.rstrip("0").rstrip(".") if "." in out else out

    # An en dash: "-" between two numbers would read as a minus sign.
    return [f"{text(lo)}\u2013{text(hi)}" for lo, hi in itertools.pairwise(edges)]


def histogram_spec(c: ColumnProfile) -> dict[str, Any] | None:
    """A bars chart of the profile's stored histogram (bin ranges as labels)."""
    h = c.histogram
    if not h or not h.get("counts"):
        return None
    edges, counts = h["edges"], h["counts"]
    labels = bin_labels(edges)[: len(counts)]
    return {
        "kind": "bars",
        "labels": labels,
        "series": [{"label": "rows", "y": counts}],
    }


def top_spec(c: ColumnProfile) -> dict[str, Any] | None:
    """A bars chart of the most frequent values; none when no value repeats (ids, hashed
    tokens): twenty bars of one row each say nothing."""
    if not c.top or max(n for _, n in c.top) <= 1:
        return None
    return {
        "kind": "bars",
        "labels": [v if len(v) <= LABEL else v[: LABEL - 1] + "\u2026" for v, _ in c.top],
        "series": [{"label": "rows", "y": [n for _, n in c.top]}],
    }


@dataclass
class ColumnView:
    """One column of a table file as the profile section shows it, PII values hidden."""

    profile: ColumnProfile
    pii: bool
    min: Any
    max: Any
    top: list[tuple[str, int]]
    chart_id: str = ""
    chart: dict[str, Any] | None = None

    @property
    def nullable(self) -> bool:
        return self.profile.nulls > 0


@dataclass
class TableView:
    path: str
    rows: int
    columns: list[ColumnView] = field(default_factory=list)


def table_views(v: DatasetVersion) -> list[TableView]:
    """Every table file's columns, with their charts; a column with unhandled PII shows
    neither its min, max nor top values (the profile holds them as found)."""
    out: list[TableView] = []
    for fi, f in enumerate(v.files):
        if f.profile is None:
            continue
        hidden = raw_pii(f)
        view = TableView(f.path, f.profile.rows)
        for ci, c in enumerate(f.profile.columns):
            pii = c.name in hidden
            numeric = is_numeric(c)
            col = ColumnView(
                profile=c,
                pii=pii,
                min=HIDDEN if pii and c.min is not None else c.min,
                max=HIDDEN if pii and c.max is not None else c.max,
                top=[] if pii else list(c.top),
                chart_id=f"chart-{fi}-{ci}",
            )
            if numeric and not pii:
                col.chart = histogram_spec(c)
            elif not pii:
                col.chart = top_spec(c)
            view.columns.append(col)
        out.append(view)
    return out


def profiles(v: DatasetVersion) -> dict[str, TableProfile]:
    return {f.path: f.profile for f in v.files if f.profile is not None}


def total_rows(v: DatasetVersion) -> int | None:
    """Rows over every table file; None when the version holds no table."""
    found = [f.profile.rows for f in v.files if f.profile is not None]
    return sum(found) if found else None
