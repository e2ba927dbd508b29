"""The side-by-side view of ``mlplane runs compare``: one plain dict, two tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from mlplane.cli._common import cells, fmt_number
from mlplane.tracking.entities import Run

# Only colours the deltas; a key that matches none of these is taken as higher-is-better.
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "perplexity", "latency", "time")


def compare(runs: Sequence[Run], *, include_system: bool = False) -> dict[str, Any]:
    """Params and metrics of ``runs`` aligned by key; metric deltas are against ``runs[0]``."""
    p_keys = sorted({k for r in runs for k in r.data.params})
    params = {k: [r.data.params.get(k) for r in runs] for k in p_keys}
    m_keys = sorted(
        k
        for k in {k for r in runs for k in r.data.metrics}
        if include_system or not k.startswith("system/")
    )
    metrics: dict[str, Any] = {}
    for k in m_keys:
        values = [r.data.metrics.get(k) for r in runs]
        base = values[0]
        deltas = [None if v is None or base is None else v - base for v in values]
        pct = [
            None
            if d is None or base is None or base == 0 or not math.isfinite(d)
            else d / abs(base) * 100
            for d in deltas
        ]
        metrics[k] = {"values": values, "delta": deltas, "delta_pct": pct}
    return {
        "runs": [
            {
                "run_id": r.info.run_id,
                "run_name": r.info.run_name,
                "experiment_id": r.info.experiment_id,
                "status": r.info.status,
            }
            for r in runs
        ],
        "params": params,
        "params_differ": [k for k, vals in params.items() if len(set(vals)) > 1],
        "metrics": metrics,
    }


def _header(run: Run) -> str:
    return f"{run.info.run_id[:8]}\n{run.info.run_name}"


def params_table(runs: Sequence[Run], result: dict[str, Any]) -> Table:
    differ = set(result["params_differ"])
    table = Table(
        title="Params",
        title_justify="left",
        caption="* differs between runs" if differ else None,
        caption_justify="left",
    )
    table.add_column("Param", style="bold")
    for r in runs:
        table.add_column(_header(r))
    for key, values in result["params"].items():
        style = "bold yellow" if key in differ else ""
        label = f"* {key}" if key in differ else f"  {key}"
        table.add_row(*cells(label, *values), style=style)
    return table


def metrics_table(runs: Sequence[Run], result: dict[str, Any]) -> Table:
    table = Table(title="Metrics (latest; Δ vs the first run)", title_justify="left")
    table.add_column("Metric", style="bold")
    table.add_column(_header(runs[0]), justify="right")
    for r in runs[1:]:
        table.add_column(_header(r), justify="right")
        table.add_column("Δ", justify="right")
    for key, m in result["metrics"].items():
        row: list[object] = [key, fmt_number(m["values"][0])]
        for v, d, pct in zip(m["values"][1:], m["delta"][1:], m["delta_pct"][1:], strict=True):
            row += [fmt_number(v), _delta(key, d, pct)]
        table.add_row(*cells(*row))
    return table


def _delta(key: str, d: float | None, pct: float | None) -> Text:
    if d is None:
        return Text("-")
    text = f"{d:+.4g}" + (f" ({pct:+.1f}%)" if pct is not None else "")
    if d == 0 or not math.isfinite(d):
        return Text(text, style="dim")
    lower_better = any(word in key.lower() for word in _LOWER_IS_BETTER)
    better = (d < 0) if lower_better else (d > 0)
    return Text(text, style="green" if better else "red")
