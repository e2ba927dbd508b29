"""The serving domain's public nouns: deployments, their routing, rollouts and history."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mlplane.errors import InvalidInput

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ROLES = ("stable", "canary", "variant")
MODES = ("single", "canary", "ab")
BATCHING = ("auto", "on", "off")


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise InvalidInput(
            f"{name!r} is not a deployment name: use up to 100 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class Variant:
    """One model version that answers callers, with its share of the traffic."""

    version: int
    weight: float
    role: str = "stable"


@dataclass(frozen=True, slots=True)
class Shadow:
    """A version that gets a mirrored copy of ``percent`` % of requests; its answer is
    logged and discarded, never returned."""

    version: int
    percent: float


@dataclass(frozen=True, slots=True)
class Routing:
    """Who answers: weighted variants, an optional shadow, an optional sticky header.

    ``mode`` says how the split came about: ``single`` (one version), ``canary`` (a
    rollout moves the weights) or ``ab`` (an experiment with fixed weights).
    """

    variants: tuple[Variant, ...]
    shadow: Shadow | None = None
    sticky_header: str | None = None
    mode: str = "single"

    def __post_init__(self) -> None:
        if not self.variants:
            raise InvalidInput("a deployment needs at least one model version to route to")
        seen: set[int] = set()
        for v in self.variants:
            if v.version in seen:
                raise InvalidInput(f"version {v.version} is listed twice in the traffic split")
            seen.add(v.version)
            if not v.weight >= 0:
                raise InvalidInput(f"the weight of version {v.version} must be >= 0")
            if v.role not in ROLES:
                raise InvalidInput(f"role {v.role!r} is not one of {', '.join(ROLES)}")
        if sum(v.weight for v in self.variants) <= 0:
            raise InvalidInput("at least one version needs a weight above 0")
        if self.shadow is not None and not 0 < self.shadow.percent <= 100:
            raise InvalidInput("the shadow percent must be above 0 and at most 100")
        if self.mode not in MODES:
            raise InvalidInput(f"mode {self.mode!r} is not one of {', '.join(MODES)}")

    @property
    def stable(self) -> int:
        """The stable version (the first one when none is marked stable)."""
        for v in self.variants:
            if v.role == "stable":
                return v.version
        return self.variants[0].version

    def versions(self) -> list[int]:
        """Every version a worker must have loaded, shadow included."""
        out = [v.version for v in self.variants]
        if self.shadow is not None and self.shadow.version not in out:
            out.append(self.shadow.version)
        return out

    def percents(self) -> dict[int, float]:
        """Each variant's share of live traffic, in percent."""
        total = sum(v.weight for v in self.variants)
        return {v.version: 100.0 * v.weight / total for v in self.variants}

    def to_dict(self) -> dict[str, Any]:
        return {
            "variants": [asdict(v) for v in self.variants],
            "shadow": asdict(self.shadow) if self.shadow else None,
            "sticky_header": self.sticky_header,
            "mode": self.mode,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Routing:
        shadow = data.get("shadow")
        return cls(
            variants=tuple(
                Variant(int(v["version"]), float(v["weight"]), str(v.get("role", "stable")))
                for v in data["variants"]
            ),
            shadow=Shadow(int(shadow["version"]), float(shadow["percent"])) if shadow else None,
            sticky_header=data.get("sticky_header"),
            mode=str(data.get("mode", "single")),
        )

    def shadow_unless(self, live: Iterable[int]) -> Shadow | None:
        """The shadow, unless it mirrors a version that is to answer live traffic."""
        if self.shadow is None or self.shadow.version in set(live):
            return None
        return self.shadow

    @classmethod
    def single(cls, version: int, shadow: Shadow | None = None) -> Routing:
        """All live traffic to ``version``, keeping ``shadow`` unless it is that version."""
        if shadow is not None and shadow.version == version:
            shadow = None
        return cls(variants=(Variant(version, 100.0, "stable"),), shadow=shadow)


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    """How a deployment is served. Every field has a default; ``update`` changes some."""

    batching: str = "auto"
    """``auto``: micro-batch only when a warm-up shows the model predicts a batch faster
    per row than single rows; ``on``; ``off``."""
    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    """How long a request may wait for others to join its batch."""
    capture_percent: float = 0.0
    """Percent of requests whose payloads are captured (0: none)."""
    sensitive: tuple[str, ...] = ()
    """Input fields masked before capture, besides those the signature marks sensitive."""
    min_replicas: int = 1
    """0 allows scaling to zero: the model is unloaded when idle and loaded on the next request."""
    max_replicas: int | None = None
    """At most this many worker processes host the model (None: every worker)."""
    target_inflight: float = 8.0
    """In-flight requests per replica the autoscaler aims for."""
    scale_to_zero_after_s: float = 300.0
    shadow_timeout_ms: float = 1000.0
    """A shadow answer later than this is abandoned (counted as a shadow error)."""

    def __post_init__(self) -> None:
        if self.batching not in BATCHING:
            raise InvalidInput(f"batching must be one of {', '.join(BATCHING)}")
        if not 1 <= self.max_batch_size <= 10_000:
            raise InvalidInput("max_batch_size must be between 1 and 10000")
        if not 0 <= self.max_wait_ms <= 1000:
            raise InvalidInput("max_wait_ms must be between 0 and 1000")
        if not 0 <= self.capture_percent <= 100:
            raise InvalidInput("capture_percent must be between 0 and 100")
        if self.min_replicas < 0:
            raise InvalidInput("min_replicas must be 0 or more")
        if self.max_replicas is not None and self.max_replicas < max(1, self.min_replicas):
            raise InvalidInput("max_replicas must be at least min_replicas and at least 1")
        if self.target_inflight <= 0 or self.scale_to_zero_after_s <= 0:
            raise InvalidInput("target_inflight and scale_to_zero_after_s must be above 0")
        if self.shadow_timeout_ms <= 0:
            raise InvalidInput("shadow_timeout_ms must be above 0")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sensitive"] = list(self.sensitive)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DeploymentConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(
                f"unknown deployment setting(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        if "sensitive" in data:
            data["sensitive"] = tuple(str(s) for s in data["sensitive"] or ())
        try:
            return cls(**data)
        except TypeError as exc:
            raise InvalidInput(f"bad deployment setting: {exc}") from None

    def replace(self, **changes: Any) -> DeploymentConfig:
        merged = self.to_dict()
        merged.update(changes)
        return DeploymentConfig.from_dict(merged)


@dataclass(frozen=True, slots=True)
class Rollout:
    """A canary rollout: the canary's traffic moves through ``steps`` while each interval's
    analysis passes; ``failure_limit`` breaches roll it back."""

    rollout_id: int
    status: str
    stable_version: int
    canary_version: int
    canary_ref: str
    promote_alias: str | None
    steps: list[float]
    step_index: int
    interval_s: float
    thresholds: dict[str, Any]
    failure_limit: int
    failures: int
    checks: list[dict[str, Any]]
    started_at: int
    started_by: str
    step_started_at: int
    next_check_at: int
    ended_at: int | None
    reason: str

    @property
    def percent(self) -> float:
        return self.steps[min(self.step_index, len(self.steps) - 1)]


@dataclass(frozen=True, slots=True)
class Deployment:
    """A live endpoint: a registered model's versions behind a traffic split."""

    deployment_id: int
    name: str
    project: str
    model: str
    model_ref: str
    routing: Routing
    config: DeploymentConfig
    generation: int
    created_at: int
    created_by: str
    updated_at: int
    updated_by: str
    rollout: Rollout | None = None
    """The running (or latest) rollout, if any."""


@dataclass(frozen=True, slots=True)
class DeploymentEvent:
    """One change of a deployment, in order: what happened and the routing after it."""

    seq: int
    generation: int
    time: int
    actor: str
    action: str
    routing: Routing
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VersionTraffic:
    """What one version served over a period (merged from every worker's windows)."""

    version: int
    kind: str
    requests: int
    errors: int
    rejected: int
    error_rate: float
    p50_ms: float | None
    p99_ms: float | None
    rows: int
    mean_batch: float | None


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """A deployment, its rollout, its traffic over the last minutes and the workers."""

    deployment: Deployment
    traffic: list[VersionTraffic]
    since: int
    workers: list[dict[str, Any]]
