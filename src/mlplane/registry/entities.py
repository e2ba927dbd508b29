"""The registry's public nouns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

META_FILE = "mlplane-model.json"
"""What a version folder says about itself: flavor, save info, signature, ONNX, environment."""


@dataclass(frozen=True, slots=True)
class ModelFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class MetricRule:
    """``metric op value``, e.g. ``auc >= 0.9``."""

    metric: str
    op: str
    value: float

    def holds(self, observed: float | None) -> bool:
        if observed is None:
            return False
        return {
            ">=": observed >= self.value,
            ">": observed > self.value,
            "<=": observed <= self.value,
            "<": observed < self.value,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True, slots=True)
class PromotionPolicy:
    """What a version must show before a protected alias may point at it."""

    require_safe_scan: bool = True
    rules: list[MetricRule] = field(default_factory=list)
    beat_champion: str | None = None
    """A metric the new version must beat the current holder of the alias on."""
    higher_is_better: bool = True


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """An immutable registered version of a model."""

    name: str
    version: int
    project: str
    flavor: str
    format: str
    run_id: str | None
    files: list[ModelFile]
    manifest_sha256: str
    scan_verdict: str
    scan_override: str | None
    signed_by: str | None
    metrics: dict[str, float]
    params: dict[str, str]
    signature: dict[str, Any] | None
    onnx: dict[str, Any] | None
    aliases: list[str]
    tags: dict[str, str]
    description: str
    card: dict[str, str]
    size: int
    created_at: int
    created_by: str
    pickle: bool = False
    """Stored with pickle (scanned) because no safe format could hold it."""
    stage: str = "None"
    """MLflow's deprecated stage (None, Staging, Production, Archived)."""
    source: str | None = None
    """Where the files were copied from (an MLflow source URI); None when uploaded."""
    logged_model_id: str | None = None
    updated_at: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    name: str
    project: str
    description: str
    owner: str
    created_at: int
    updated_at: int
    latest_version: int | None
    aliases: dict[str, int]
    protected_aliases: list[str]
    policy: PromotionPolicy
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelLineage:
    """version → run → params/metrics → dataset versions → code commit."""

    version: ModelVersion
    run_id: str | None
    run_name: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    datasets: list[str]
    """``name@version`` of every dataset input the run logged."""
    git_commit: str | None
    git_branch: str | None
    git_dirty: bool | None
