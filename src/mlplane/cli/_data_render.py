"""Tables for dataset versions' quality results and PII findings."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from mlplane.cli._common import cells, console, info
from mlplane.datasets.entities import DatasetVersion


def _examples(examples: list[tuple[str, int]] | list[list[object]]) -> str:
    return ", ".join(f"{f}:{r}" for f, r in examples[:5])  # type: ignore[misc]


def quality_and_pii(v: DatasetVersion, *, only_problems: bool) -> None:
    """Print the contract results and the PII findings of a version."""
    q = v.quality
    if q is not None:
        rows = [r for r in q.results if not (only_problems and r.passed)]
        if rows:
            table = Table(title="Quality contract", title_justify="left")
            for head in ("Expectation", "Column", "Severity", "Result", "Failing", "Observed"):
                table.add_column(head, justify="right" if head == "Failing" else "left")
            table.add_column("Example rows")
            for r in rows:
                result = (
                    Text("pass", style="green")
                    if r.passed
                    else Text("warn" if r.severity == "warn" else "FAIL", style="yellow")
                )
                table.add_row(
                    *cells(r.kind, r.column or "(table)", r.severity),
                    result,
                    *cells(r.failing, r.observed, _examples(r.examples)),
                )
            console().print(table)
        elif only_problems:
            info(f"quality contract: all {len(q.results)} expectations passed")
    findings = [(f.path, c) for f in v.files if f.pii is not None for c in f.pii.columns]
    if findings:
        table = Table(title="PII", title_justify="left")
        for head in ("File", "Column", "Found", "Cells", "Action", "Example rows"):
            table.add_column(head, justify="right" if head == "Cells" else "left")
        for path, c in findings:
            found = ", ".join(f"{k} ({n})" for k, n in c.kinds.items())
            if c.name_hint:
                found = ", ".join(x for x in (found, f"name hint: {c.name_hint}") if x)
            action = Text(c.action, style="red" if c.action in ("none", "block") else "")
            table.add_row(
                *cells(path, c.column, found, c.rows), action, *cells(_examples(c.examples))
            )
        console().print(table)
    if v.pii_unhandled:
        info(
            Text(
                f"{v.ref} holds PII that no policy handles: it cannot be a training input. "
                "Add it again with --pii mask|hash|drop, or allow it (--pii COLUMN=allow).",
                style="yellow",
            )
        )
