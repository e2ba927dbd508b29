"""Promotion policies: what a version must show before a protected alias may point at it.

A policy is written as a mapping (YAML, JSON or Python)::

    {"require_safe_scan": true, "rules": ["auc >= 0.9", "latency_ms < 50"],
     "beat_champion": "auc", "higher_is_better": true}

``check`` returns the reasons a version fails, one per broken rule, so a refused
promotion can say exactly which rule failed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from mlplane.errors import InvalidInput
from mlplane.registry.entities import MetricRule, ModelVersion, PromotionPolicy

_RULE = re.compile(r"^\s*([A-Za-z0-9_.\-/ ]+?)\s*(>=|<=|>|<)\s*(-?[0-9.eE+\-]+)\s*$")
_KEYS = {"require_safe_scan", "rules", "beat_champion", "higher_is_better"}


def parse_rule(text: str) -> MetricRule:
    m = _RULE.match(text)
    if not m:
        raise InvalidInput(
            f"{text!r} is not a metric rule: write METRIC OP VALUE with OP one of >=, >, <=, <, "
            "e.g. 'auc >= 0.9'"
        )
    try:
        value = float(m.group(3))
    except ValueError:
        raise InvalidInput(f"{text!r}: {m.group(3)!r} is not a number") from None
    return MetricRule(m.group(1).strip(), m.group(2), value)


def parse_policy(spec: Mapping[str, Any] | PromotionPolicy | str | None) -> PromotionPolicy:
    """A policy from a mapping, its JSON text, or a policy (``None``: the default)."""
    if spec is None:
        return PromotionPolicy()
    if isinstance(spec, PromotionPolicy):
        return spec
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"the promotion policy is not JSON: {exc}") from None
    if not isinstance(spec, Mapping):
        raise InvalidInput("a promotion policy is a mapping (see mlplane.registry.policy)")
    unknown = set(spec) - _KEYS
    if unknown:
        raise InvalidInput(
            f"unknown promotion policy keys: {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KEYS))}"
        )
    rules = []
    for r in spec.get("rules", []) or []:
        if isinstance(r, Mapping):
            rules.append(MetricRule(str(r["metric"]), str(r["op"]), float(r["value"])))
        else:
            rules.append(parse_rule(str(r)))
    for r in rules:
        if r.op not in (">=", ">", "<=", "<"):
            raise InvalidInput(f"{r}: the operator must be one of >=, >, <=, <")
    beat = spec.get("beat_champion")
    return PromotionPolicy(
        require_safe_scan=bool(spec.get("require_safe_scan", True)),
        rules=rules,
        beat_champion=str(beat) if beat else None,
        higher_is_better=bool(spec.get("higher_is_better", True)),
    )


def to_json(policy: PromotionPolicy) -> str:
    data = asdict(policy)
    data["rules"] = [str(r) for r in policy.rules]
    return json.dumps(data, sort_keys=True)


def check(
    policy: PromotionPolicy, candidate: ModelVersion, current: ModelVersion | None
) -> list[str]:
    """Why ``candidate`` may not take the alias ``current`` holds (empty: it may)."""
    problems = []
    if policy.require_safe_scan and candidate.scan_verdict != "safe":
        problems.append(
            f"scan verdict is {candidate.scan_verdict!r}"
            + (f" (accepted by {candidate.scan_override})" if candidate.scan_override else "")
            + "; the policy requires 'safe'"
        )
    for rule in policy.rules:
        observed = candidate.metrics.get(rule.metric)
        if not rule.holds(observed):
            seen = "not logged" if observed is None else f"{observed:g}"
            problems.append(f"rule {rule} fails: {rule.metric} is {seen}")
    metric = policy.beat_champion
    if metric and current is not None and current.version != candidate.version:
        mine, theirs = candidate.metrics.get(metric), current.metrics.get(metric)
        if mine is None:
            problems.append(f"{metric} is not logged, so it cannot beat version {current.version}")
        elif theirs is not None:
            better = mine > theirs if policy.higher_is_better else mine < theirs
            if not better:
                problems.append(
                    f"{metric} {mine:g} does not beat the current version {current.version} "
                    f"({theirs:g}, {'higher' if policy.higher_is_better else 'lower'} is better)"
                )
    return problems
