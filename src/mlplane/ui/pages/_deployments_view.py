"""What the deployment pages show, computed from the serving service's entities: the split
bar, the charts of the timeline, and each canary check broken into its criteria.

Kept apart from the routes so the page module is only its queries, and so the timeline's
JSON endpoint and the page draw the very same chart specs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlplane.errors import InvalidInput
from mlplane.serving.analysis import CanaryThresholds
from mlplane.serving.entities import Deployment, Rollout

WINDOWS: dict[str, tuple[float, float]] = {
    "1h": (3600.0, 60.0),
    "6h": (6 * 3600.0, 300.0),
    "24h": (24 * 3600.0, 900.0),
}
"""Chart window -> (seconds looked back, bucket seconds): about 60-100 points each."""


def window(value: str | None) -> tuple[str, float, float]:
    key = value or "1h"
    if key not in WINDOWS:
        raise InvalidInput(f"window {key!r} is not one of {', '.join(WINDOWS)}")
    since, bucket = WINDOWS[key]
    return key, since, bucket


@dataclass(frozen=True, slots=True)
class Segment:
    """One part of the split bar."""

    label: str
    width: float
    color: int


def split(d: Deployment) -> list[Segment]:
    """The live split, a segment a variant with weight (colours by position, as in the
    charts, whose series come in version order)."""
    percents = d.routing.percents()
    order = sorted(percents)
    return [
        Segment(f"v{v} {percents[v]:.0f}%", round(percents[v], 2), order.index(v))
        for v in order
        if percents[v] > 0
    ]


def mode(d: Deployment) -> str:
    """single, canary or ab; a mirrored copy of traffic shows as ``shadow``."""
    m = d.routing.mode
    if d.routing.shadow is None:
        return m
    return "shadow" if m == "single" else f"{m} + shadow"


def _label(version: int, kind: str) -> str:
    return f"v{version}" if kind == "live" else f"v{version} {kind}"


def charts(points: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The timeline (``DeploymentService.timeline`` items) as three ``time`` chart specs:
    request rate, error rate and p50/p99 latency, a series per version (and kind). No
    titles: the page heads each chart's box."""
    keys = sorted({(p["kind"] != "live", p["version"], p["kind"]) for p in points})
    rps: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    for _, version, kind in keys:
        mine = [p for p in points if p["version"] == version and p["kind"] == kind]
        time = [p["time"] for p in mine]
        label = _label(version, kind)
        rps.append({"label": label, "time": time, "y": [p["rps"] for p in mine]})
        errors.append({"label": label, "time": time, "y": [100.0 * p["error_rate"] for p in mine]})
        for q in ("p50", "p99"):
            latency.append(
                {"label": f"{label} {q}", "time": time, "y": [p[f"{q}_ms"] for p in mine]}
            )
    return {
        "rps": {"kind": "time", "y_label": "req/s", "series": rps},
        "errors": {"kind": "time", "y_label": "%", "series": errors},
        "latency": {"kind": "time", "y_label": "ms", "series": latency},
    }


@dataclass(frozen=True, slots=True)
class Criterion:
    """One threshold of one canary check: what was seen against what was allowed."""

    name: str
    observed: float | None
    limit: str
    verdict: str
    """pass, fail or wait (too little traffic to judge)."""


def _le(name: str, observed: float | None, limit: float, shown: str, enough: bool) -> Criterion:
    if not enough or observed is None:
        return Criterion(name, observed, shown, "wait")
    return Criterion(name, observed, shown, "pass" if observed <= limit else "fail")


def criteria(check: dict[str, Any], thresholds: dict[str, Any]) -> list[Criterion]:
    """The criteria :func:`mlplane.serving.analysis.judge` applied to ``check``, each with
    its own verdict, so the page shows which threshold a failed step breached."""
    t = CanaryThresholds(**thresholds)
    canary_n = int(check.get("canary_requests") or 0)
    stable_n = int(check.get("stable_requests") or 0)
    canary_ok, stable_ok = canary_n >= t.min_requests, stable_n >= t.min_requests
    out = [
        Criterion(
            "canary requests",
            canary_n,
            f">= {t.min_requests}",
            "pass" if canary_ok else "wait",
        )
    ]
    if t.max_p99_ratio is not None or t.max_prediction_shift is not None:
        out.append(
            Criterion(
                "stable requests",
                stable_n,
                f">= {t.min_requests}",
                "pass" if stable_ok else "wait",
            )
        )
    if t.max_error_rate is not None:
        out.append(
            _le(
                "canary error rate",
                check.get("canary_error_rate"),
                t.max_error_rate,
                f"<= {t.max_error_rate:g}",
                canary_ok,
            )
        )
    c_p99, s_p99 = check.get("canary_p99_ms"), check.get("stable_p99_ms")
    if t.max_p99_ms is not None:
        out.append(_le("canary p99 ms", c_p99, t.max_p99_ms, f"<= {t.max_p99_ms:g}", canary_ok))
    if t.max_p99_ratio is not None:
        ratio = c_p99 / s_p99 if c_p99 is not None and s_p99 else None
        out.append(
            _le(
                "p99 / stable p99",
                ratio,
                t.max_p99_ratio,
                f"<= {t.max_p99_ratio:g}",
                canary_ok and stable_ok,
            )
        )
    if t.max_prediction_shift is not None:
        out.append(
            _le(
                f"prediction shift ({t.shift_method})",
                check.get("shift"),
                t.max_prediction_shift,
                f"<= {t.max_prediction_shift:g}",
                canary_ok and stable_ok,
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class Step:
    """A step of a rollout with the checks made while it ran."""

    index: int
    percent: float
    state: str
    """done, current or pending."""
    checks: list[tuple[dict[str, Any], list[Criterion]]]


def steps(r: Rollout) -> list[Step]:
    out = []
    for i, pct in enumerate(r.steps):
        made = [(c, criteria(c, r.thresholds)) for c in r.checks if int(c.get("step", 0)) == i]
        if i < r.step_index or (i == r.step_index and r.status == "promoted"):
            state = "done"
        elif i == r.step_index and r.status == "running":
            state = "current"
        elif i == r.step_index:
            state = r.status
        else:
            state = "pending"
        out.append(Step(i, pct, state, made))
    return out


def history_details(details: dict[str, Any]) -> str:
    """The few details of a change worth a column (as ``mlplane deploy history``)."""
    keys = ("model", "version", "canary", "reason", "step", "to", "to_generation", "variants")
    return ", ".join(f"{k}={details[k]}" for k in keys if details.get(k) not in (None, ""))
