"""What an import did: per kind of object, how many were imported, skipped and failed."""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = (
    "experiments",
    "runs",
    "metric_points",
    "params",
    "tags",
    "inputs",
    "artifacts",
    "models",
    "model_versions",
    "aliases",
)
"""The kinds a report counts, in the order the summary prints them."""


@dataclass
class Tally:
    imported: int = 0
    skipped: int = 0
    """Already imported by an earlier run of the import (or not importable, with a reason)."""
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Failure:
    kind: str
    item: str
    """The MLflow object: an experiment name, a run id, ``model/version``, a file path."""
    reason: str


@dataclass
class ImportReport:
    source: str
    project: str
    dry_run: bool = False
    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was skipped on purpose, and why (once per reason)."""

    def add(self, kind: str, outcome: str, n: int = 1) -> None:
        tally = self.tallies.setdefault(kind, Tally())
        setattr(tally, outcome, getattr(tally, outcome) + n)

    def fail(self, kind: str, item: str, reason: str) -> None:
        self.add(kind, "failed")
        self.failures.append(Failure(kind, item, reason))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def ok(self) -> bool:
        return not self.failures
