"""A table profile as stored: its dataclasses, JSON form and which files are tables.

Kept apart from :mod:`mlplane.datasets.profile` (which computes profiles with
pyarrow, pandas and sketches) so that reading and listing versions, and adding
folders without tables, load none of that.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    name: str
    type: str
    count: int
    nulls: int
    distinct: int
    min: float | str | None = None
    max: float | str | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    histogram: dict[str, list[float]] = field(default_factory=dict)
    top: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TableProfile:
    rows: int
    columns: list[ColumnProfile]

    def column(self, name: str) -> ColumnProfile:
        return next(c for c in self.columns if c.name == name)


TABLE_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".ndjson": "json",
}


def table_format(path: str | os.PathLike[str]) -> str | None:
    """The Arrow dataset format of a table file, by its suffix (None for other files)."""
    return TABLE_FORMATS.get(os.path.splitext(os.fspath(path))[1].lower())


def to_json(profile: TableProfile) -> str:
    return json.dumps(asdict(profile), allow_nan=False, default=str)


def from_json(text: str) -> TableProfile:
    data = json.loads(text)
    cols = [ColumnProfile(**{**c, "top": [tuple(t) for t in c["top"]]}) for c in data["columns"]]
    return TableProfile(rows=data["rows"], columns=cols)
