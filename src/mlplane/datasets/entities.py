"""The data domain's public nouns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: keeps `import mlplane` free of pandas and pyarrow
    from mlplane.datasets.contracts import ContractReport
    from mlplane.datasets.pii import PiiReport
    from mlplane.datasets.profile import TableProfile


@dataclass(frozen=True, slots=True)
class DatasetFile:
    """One file of a version: its path inside the version, size, content digest and, for
    a table file, its profile (schema and statistics)."""

    path: str
    size: int
    digest: str
    profile: TableProfile | None = None
    pii: PiiReport | None = None


@dataclass(frozen=True, slots=True)
class DatasetVersion:
    """An immutable, content-addressed snapshot of files.

    ``digest`` covers every file path and content, so two versions with the
    same digest hold the same bytes.
    """

    name: str
    version: int
    project: str
    digest: str
    size: int
    file_count: int
    created_at: int
    created_by: str
    tags: list[str] = field(default_factory=list)
    files: list[DatasetFile] = field(default_factory=list)
    quality: ContractReport | None = None
    """The contract's results when the version was added under one (warnings included)."""
    pii_unhandled: bool = False
    """PII was found that no policy handled: refused as a training input unless allowed."""
    pii_policy: dict[str, object] | None = None
    derived_from: str | None = None
    """``name@version`` this version was sampled from, else None."""
    derivation: dict[str, object] | None = None
    """How it was derived (``{"op": "sample", "fraction": 0.1, "seed": 7}``), else None."""

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True, slots=True)
class AddResult:
    """What :meth:`DataService.add` did: the version, and whether it is new."""

    version: DatasetVersion
    created: bool
    bytes_in: int
    bytes_stored: int
    files_rehashed: int


@dataclass(frozen=True, slots=True)
class LineageRun:
    """A run that read a dataset version."""

    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time: int
    context: str = ""
    unhandled_pii: bool = False
    """The run read the version despite unhandled PII (an explicit, audited decision)."""


@dataclass(frozen=True, slots=True)
class DatasetLineage:
    """Where a version came from and what was made from it."""

    version: DatasetVersion
    derived_from: str | None
    derived: list[str] = field(default_factory=list)
    """Versions made from this one (samples), as ``name@version``."""
    runs: list[LineageRun] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    """Registered model versions trained from it (filled once the registry exists)."""
