"""The PII report: counts per kind and (file, row) positions per column, never values."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from mlplane.errors import InvalidInput

_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class ColumnFinding:
    """What was found in one column, and what was done about it.

    Attributes:
        column: The column name.
        kinds: Number of cells with each kind of PII.
        rows: Number of cells with any PII.
        examples: Up to five ``(file, row)`` positions (0-based rows within the
            file) of cells with PII; never values.
        name_hint: The kind the column's name announces, if any.
        action: ``mask``, ``hash``, ``drop``, ``allow``, ``block`` or ``none``
            (found and not handled).
    """

    column: str
    kinds: dict[str, int]
    rows: int
    examples: list[tuple[str, int]]
    name_hint: str | None
    action: str


@dataclass(frozen=True)
class PiiReport:
    """The PII findings of one dataset version; stored with it.

    Attributes:
        columns: Columns with findings or with an explicit transforming policy.
    """

    columns: list[ColumnFinding]

    @property
    def unhandled(self) -> bool:
        """Whether PII was found where no policy says what to do."""
        return any(c.rows and c.action == "none" for c in self.columns)

    @property
    def blocked(self) -> list[str]:
        """Columns with PII under ``block``: the version must be refused."""
        return [c.column for c in self.columns if c.rows and c.action == "block"]

    def summary(self) -> str:
        """Human-readable lines, counts and actions only."""
        found = [c for c in self.columns if c.rows]
        if not self.columns:
            return "No PII found."
        lines = [f"PII found in {len(found)} column(s)."]
        if self.blocked:
            lines.append(f"Blocked: {', '.join(self.blocked)}.")
        if self.unhandled:
            lines.append("Some PII is not handled by any policy.")
        for c in self.columns:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(c.kinds.items()))
            hint = f", name suggests {c.name_hint}" if c.name_hint else ""
            lines.append(
                f"  {c.column}: {c.rows} cell(s) ({kinds or 'none detected'}{hint}) -> {c.action}"
            )
        return "\n".join(lines)

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps({"columns": [asdict(c) for c in self.columns]}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PiiReport:
        """Read what :meth:`to_json` wrote.

        Raises:
            InvalidInput: The text is not a PII report.
        """
        try:
            columns = [
                ColumnFinding(
                    column=str(c["column"]),
                    kinds={str(k): int(n) for k, n in c["kinds"].items()},
                    rows=int(c["rows"]),
                    examples=[(str(f), int(r)) for f, r in c["examples"]],
                    name_hint=c["name_hint"],
                    action=str(c["action"]),
                )
                for c in json.loads(text)["columns"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"not a PII report: {exc}") from None
        return cls(columns)

    @staticmethod
    def merge(reports: Iterable[PiiReport]) -> PiiReport:
        """One report from several, e.g. one scanner per file; ``block`` and ``none`` win."""
        merged: dict[str, ColumnFinding] = {}
        for report in reports:
            for c in report.columns:
                old = merged.get(c.column)
                if old is None:
                    merged[c.column] = c
                    continue
                actions = {old.action, c.action}
                action = next((a for a in ("block", "none") if a in actions), old.action)
                merged[c.column] = ColumnFinding(
                    column=c.column,
                    kinds=dict(Counter(old.kinds) + Counter(c.kinds)),
                    rows=old.rows + c.rows,
                    examples=(old.examples + c.examples)[:_MAX_EXAMPLES],
                    name_hint=old.name_hint or c.name_hint,
                    action=action,
                )
        return PiiReport(list(merged.values()))
