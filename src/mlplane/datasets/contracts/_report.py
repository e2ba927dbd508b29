"""The outcome of a check: one result per expectation, and the gate over them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ExpectationResult:
    """The outcome of one expectation.

    Attributes:
        kind: The expectation's kind.
        column: Its column; None for table-level expectations.
        severity: ``"error"`` or ``"warn"``.
        passed: Whether the data met it.
        failing: Failing rows; 0/1 for ``row_count`` and ``freshness``, rows
            returned for ``sql``.
        examples: Up to five ``(file, row index)`` of failing rows, 0-based
            within the file; empty where rows are not meaningful.
        observed: A short human detail, e.g. ``"max 12.5 > 10"``.
        name: The name of an ``sql`` expectation, else None.
    """

    kind: str
    column: str | None
    severity: str
    passed: bool
    failing: int
    examples: list[tuple[str, int]]
    observed: str
    name: str | None = None

    @property
    def label(self) -> str:
        """How the summary names the expectation."""
        return f"column {self.column!r} {self.kind}" if self.column else f"table {self.kind}"


@dataclass(frozen=True)
class ContractReport:
    """Every expectation's result; ``passed`` is the gate."""

    results: list[ExpectationResult]

    @property
    def passed(self) -> bool:
        """True when no expectation with severity error failed."""
        return not self.failures

    @property
    def failures(self) -> list[ExpectationResult]:
        """Failed expectations with severity error."""
        return [r for r in self.results if not r.passed and r.severity == "error"]

    @property
    def warnings(self) -> list[ExpectationResult]:
        """Failed expectations with severity warn."""
        return [r for r in self.results if not r.passed and r.severity == "warn"]

    def summary(self) -> str:
        """A multi-line text naming each failing expectation; usable as an error message."""
        head = (
            f"data-quality contract passed ({len(self.results)} expectations)"
            if self.passed
            else f"data-quality contract failed: {len(self.failures)} of"
            f" {len(self.results)} expectations with severity error"
        )
        lines = [head]
        for title, group in (("errors", self.failures), ("warnings", self.warnings)):
            if group:
                lines.append(f"{title}:")
            for r in group:
                rows = ", ".join(f"{f} row {i}" for f, i in r.examples)
                count = r.kind not in ("row_count", "freshness", "sql")
                detail = f"{_n(r.failing, 'failing row')} ({r.observed})" if count else r.observed
                lines.append(f"  - {r.label}: {detail}" + (f"; e.g. {rows}" if rows else ""))
        return "\n".join(lines)

    def to_json(self) -> str:
        """Serialise for storing with a dataset version."""
        return json.dumps({"results": [asdict(r) for r in self.results]}, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> ContractReport:
        """Read back what :meth:`to_json` wrote."""
        rows = json.loads(text)["results"]
        return cls(
            [
                ExpectationResult(**{**r, "examples": [tuple(x) for x in r["examples"]]})
                for r in rows
            ]
        )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")
