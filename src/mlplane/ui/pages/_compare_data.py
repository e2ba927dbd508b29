"""What the compare page shows, computed from the runs: their labels, the metric keys they
share, the params diff, the params-vs-metric scatter, the parallel coordinates, and the
metric curves (downsampled) that ``/ui/api/compare/metrics`` serves.

Kept apart from the routes so it can be read (and tested) as plain functions over
:class:`~mlplane.tracking.entities.Run`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlplane.errors import InvalidInput, NotFound
from mlplane.security import Principal
from mlplane.services import Services
from mlplane.tracking import validation
from mlplane.tracking.entities import TAG_PREFIX_SYSTEM, Metric, Run, ViewType

MIN_RUNS = 2
MAX_RUNS = 100
MAX_POINTS = 2000
"""Points per series a curve is sent with; longer series are downsampled to this."""
MAX_CHARTS = 12
"""Charts drawn at once; the other keys wait behind "more"."""


def parse_runs(value: str | None) -> list[str]:
    """The run ids of ``?runs=a,b,c`` in order, each once; too few or too many is a 400
    that says what to change."""
    ids = list(dict.fromkeys(v.strip() for v in (value or "").split(",") if v.strip()))
    if len(ids) < MIN_RUNS:
        raise InvalidInput(
            f"compare needs at least {MIN_RUNS} runs: give their ids as "
            f"?runs=ID1,ID2 (got {len(ids)}); pick runs on an experiment's page"
        )
    if len(ids) > MAX_RUNS:
        raise InvalidInput(
            f"compare takes at most {MAX_RUNS} runs at once (got {len(ids)}): "
            f"remove {len(ids) - MAX_RUNS} from ?runs="
        )
    for rid in ids:
        validation.run_id(rid)
    return ids


def load_runs(svc: Services, me: Principal, ids: Sequence[str]) -> list[Run]:
    """The runs, in the order asked for, each read through the service (which checks the
    caller may read its experiment's project).

    One ``get_run`` finds a run's experiment, then one search fetches every asked-for run
    of that experiment: a sweep of a hundred runs is two queries, not a hundred."""
    found: dict[str, Run] = {}
    for rid in ids:
        if rid in found:
            continue
        try:
            run = svc.tracking.get_run(me, rid)
        except NotFound as exc:
            raise NotFound(f"{exc.message}: remove {rid} from ?runs=") from exc
        found[rid] = run
        wanted = [i for i in ids if i not in found]
        if not wanted:
            break
        quoted = ", ".join(f"'{i}'" for i in wanted)  # ids are checked hex: nothing to escape
        page = svc.tracking.search_runs(
            me,
            [run.info.experiment_id],
            filter_string=f"attributes.run_id IN ({quoted})",
            view_type=ViewType.ALL,
            max_results=len(wanted),
        )
        found.update((r.info.run_id, r) for r in page.runs)
    return [found[rid] for rid in ids]


def labels(runs: Sequence[Run]) -> list[str]:
    """Each run's label: its name, or name and short id where names collide."""
    names = [r.info.run_name or r.info.run_id[:8] for r in runs]
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    return [
        f"{n} ({r.info.run_id[:7]})" if seen[n] > 1 else n for n, r in zip(names, runs, strict=True)
    ]


def metric_keys(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """(keys every run has, keys any run has), sorted."""
    sets = [set(r.data.metrics) for r in runs]
    common = set.intersection(*sets) if sets else set()
    return sorted(common), sorted(set.union(*sets) if sets else set())


def user_tags(run: Run) -> dict[str, str]:
    """Tags people set: not mlplane's own (notes, captured context) nor MLflow's."""
    return {
        k: v
        for k, v in run.data.tags.items()
        if not k.startswith(TAG_PREFIX_SYSTEM) and not k.startswith("mlflow.")
    }


@dataclass(frozen=True)
class DiffRow:
    group: str
    """``params``, ``metrics`` or ``tags``."""
    key: str
    values: list[Any]
    differs: bool


def diff_rows(runs: Sequence[Run]) -> list[DiffRow]:
    """One row per param, last metric value and tag, across the runs (None where a run
    lacks it); a row differs when its values are not all the same."""
    out: list[DiffRow] = []
    columns: list[tuple[str, list[dict[str, Any]]]] = [
        ("params", [dict(r.data.params) for r in runs]),
        ("metrics", [dict(r.data.metrics) for r in runs]),
        ("tags", [user_tags(r) for r in runs]),
    ]
    for group, maps in columns:
        for key in sorted(set().union(*maps)):
            values = [m.get(key) for m in maps]
            distinct = {_same(v) for v in values}
            out.append(DiffRow(group, key, values, len(distinct) > 1))
    return out


def _same(value: Any) -> Any:
    # NaN != NaN: two runs both at NaN do not differ.
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def as_number(value: str | float | None) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def field_value(run: Run, field: str) -> Any:
    """The value of ``params.X``, ``metrics.X`` (last value) or ``tags.X`` of a run."""
    group, _, key = field.partition(".")
    sources: dict[str, dict[str, Any]] = {
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
    }
    source = sources.get(group, {})
    return source.get(key)


def fields(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """(params that differ or are shared, as ``params.X``; metrics as ``metrics.X``)."""
    params = sorted(set().union(*(r.data.params for r in runs)))
    _, metrics = metric_keys(runs)
    return [f"params.{p}" for p in params], [f"metrics.{m}" for m in metrics]


def pick(wanted: str | None, options: Sequence[str], preferred: Sequence[str]) -> str | None:
    """``wanted`` if it is an option; else the first preferred option; else the first."""
    if wanted:
        if wanted not in options:
            raise InvalidInput(f"{wanted} is not a field of these runs: pick one of the list")
        return wanted
    for p in preferred:
        if p in options:
            return p
    return options[0] if options else None


@dataclass(frozen=True)
class Axis:
    """One axis of the scatter or the parallel coordinates: numbers, or categories
    plotted at their index."""

    field: str
    values: list[float | None]
    categories: list[str] | None


def axis(runs: Sequence[Run], field: str) -> Axis:
    raw = [field_value(r, field) for r in runs]
    nums = [as_number(v) for v in raw]
    if all(n is not None for n, v in zip(nums, raw, strict=True) if v is not None):
        return Axis(field, nums, None)
    cats = sorted({str(v) for v in raw if v is not None})
    index = {c: float(i) for i, c in enumerate(cats)}
    return Axis(field, [index[str(v)] if v is not None else None for v in raw], cats)


def scatter_spec(runs: Sequence[Run], names: Sequence[str], x: str, y: str) -> dict[str, Any]:
    """A point per run, each its own series so its colour matches the run's swatch."""
    ax, ay = axis(runs, x), axis(runs, y)
    series = [
        {"label": name, "color": i, "x": [xv], "y": [yv], "names": [name]}
        for i, (name, xv, yv) in enumerate(zip(names, ax.values, ay.values, strict=True))
        if xv is not None and yv is not None
    ]
    positive = [v for v in ax.values if v is not None]
    log_x = (
        ax.categories is None
        and bool(positive)
        and min(positive) > 0
        and max(positive) / min(positive) >= 100
    )
    spec: dict[str, Any] = {
        "kind": "scatter",
        "x_label": x,
        "y_label": y,
        "log_x": log_x,
        "series": series,
    }
    if ax.categories is not None:
        spec["x_labels"] = ax.categories
    if ay.categories is not None:
        spec["y_labels"] = ay.categories
    return spec


def differing_params(rows: Sequence[DiffRow]) -> list[str]:
    return [f"params.{r.key}" for r in rows if r.group == "params" and r.differs]


def parallel_data(
    runs: Sequence[Run], names: Sequence[str], params: Sequence[str], metric: str | None
) -> dict[str, Any]:
    """Axes (the differing params, then the metric) and one line per run, for compare.js."""
    chosen = [*params, *([metric] if metric else [])]
    axes = []
    for f in chosen:
        a = axis(runs, f)
        present = [v for v in a.values if v is not None]
        log = (
            a.categories is None
            and bool(present)
            and min(present) > 0
            and max(present) / min(present) >= 100
        )
        axes.append({"label": f, "values": a.values, "categories": a.categories, "log": log})
    return {"axes": axes, "runs": list(names)}


# -- metric curves -----------------------------------------------------------------------


def downsample(points: Sequence[Metric], limit: int = MAX_POINTS) -> list[Metric]:
    """At most ``limit`` points that keep the curve's shape: the first and the last, and
    each bucket's lowest and highest value in their order (so spikes survive, which an
    average or a stride would lose)."""
    n = len(points)
    if n <= limit:
        return list(points)
    buckets = max(1, (limit - 2) // 2)
    inner = n - 2
    keep = {0, n - 1}
    for b in range(buckets):
        lo = 1 + b * inner // buckets
        hi = 1 + (b + 1) * inner // buckets
        finite = [i for i in range(lo, hi) if math.isfinite(points[i].value)]
        if not finite:
            if lo < hi:
                keep.add(lo)
            continue
        keep.add(min(finite, key=lambda i: points[i].value))
        keep.add(max(finite, key=lambda i: points[i].value))
    return [points[i] for i in sorted(keep)]


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def curves_spec(
    svc: Services, me: Principal, runs: Sequence[Run], names: Sequence[str], key: str
) -> dict[str, Any]:
    """The "lines" spec of one metric over the runs that logged it; each series keeps its
    run's colour index. ``downsampled`` counts the series cut to ``max_points``."""
    series: list[dict[str, Any]] = []
    cut = 0
    logged = [run.info.run_id for run in runs if key in run.data.metrics]
    histories = svc.tracking.get_metric_histories_for_runs(me, logged, [key]) if logged else {}
    for i, (run, name) in enumerate(zip(runs, names, strict=True)):
        if key not in run.data.metrics:
            continue
        history = histories[run.info.run_id].get(key, [])
        points = downsample(history)
        cut += len(points) < len(history)
        series.append(
            {
                "label": name,
                "color": i,
                "run_id": run.info.run_id,
                "total": len(history),
                "step": [p.step for p in points],
                "time": [p.timestamp for p in points],
                "y": [_finite(p.value) for p in points],
            }
        )
    if series and all(s["total"] <= 1 for s in series):
        # One value per run (a final score): a curve of single points draws nothing, bars
        # compare them at a glance.
        return {
            "kind": "bars",
            "title": key,
            "labels": [s["label"] for s in series],
            "series": [{"label": key, "y": [s["y"][0] if s["y"] else None for s in series]}],
            "runs_logged": len(series),
            "downsampled": 0,
            "max_points": MAX_POINTS,
        }
    return {
        "kind": "lines",
        "title": key,
        "x": "step",
        "controls": True,
        "series": series,
        "runs_logged": len(series),
        "downsampled": cut,
        "max_points": MAX_POINTS,
    }
