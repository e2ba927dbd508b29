"""The data domain's public nouns."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlplane.datasets.profile import TableProfile


@dataclass(frozen=True, slots=True)
class DatasetFile:
    """One file of a version: its path inside the version, size, content digest and, for
    a table file, its profile (schema and statistics)."""

    path: str
    size: int
    digest: str
    profile: TableProfile | None = None


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
