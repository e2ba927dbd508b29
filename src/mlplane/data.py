"""Versioned datasets from Python: ``mlplane.data.add(...)``, ``mlplane.data.get("name@3")``.

A thin face over :class:`mlplane.Client` (which picks the store from
``MLPLANE_URI``); the rules live in :mod:`mlplane.datasets.service`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlplane.datasets.entities import DatasetVersion
from mlplane.datasets.profile import table_format
from mlplane.errors import InvalidInput
from mlplane.projects import DEFAULT_PROJECT


def _client() -> Any:
    from mlplane import fluent

    return fluent.client()


def add(
    name: str, source: str | os.PathLike[str] | Any, *, project: str = DEFAULT_PROJECT
) -> DatasetVersion:
    """Store a file, a folder or a pandas DataFrame (as Parquet) as the next version of
    ``name``; nothing new is made when the content is unchanged."""
    transport = _client().transport
    if hasattr(source, "to_parquet"):
        with tempfile.TemporaryDirectory(prefix="mlplane-df-") as tmp:
            path = Path(tmp) / f"{name.partition('@')[0]}.parquet"
            source.to_parquet(path, index=False)
            result = transport.add_dataset(name, path, project=project, progress=None)
    else:
        result = transport.add_dataset(name, source, project=project, progress=None)
    return result.version  # type: ignore[no-any-return]


def get(ref: str, *, project: str = DEFAULT_PROJECT) -> Dataset:
    """A version by reference: ``name``, ``name@3``, ``name@latest``, ``name@prod``."""
    return Dataset(_client().transport.get_dataset(ref, project=project), project)


def ls(*, project: str = DEFAULT_PROJECT) -> list[DatasetVersion]:
    """The newest version of every dataset."""
    return _client().transport.list_datasets(project=project)  # type: ignore[no-any-return]


def versions(name: str, *, project: str = DEFAULT_PROJECT) -> list[DatasetVersion]:
    return _client().transport.dataset_versions(name, project=project)  # type: ignore[no-any-return]


def tag(ref: str, tag: str, *, project: str = DEFAULT_PROJECT) -> DatasetVersion:
    """Point a tag such as ``prod`` at a version."""
    return _client().transport.tag_dataset(ref, tag, project=project)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Dataset:
    """A dataset version you can read: as files, a pandas DataFrame or an Arrow table."""

    version: DatasetVersion
    project: str = DEFAULT_PROJECT

    def path(self, dest: str | os.PathLike[str] | None = None) -> Path:
        """The version's files on local disk (a content-addressed cache unless ``dest``)."""
        client = _client()
        if dest is None:
            folder = (
                client.settings.home / "cache" / "datasets" / self.version.digest.replace(":", "-")
            )
            done = folder / ".complete"
            if not done.exists():
                client.transport.download_dataset(self.version.ref, folder, project=self.project)
                done.touch()
            return folder
        return Path(client.transport.download_dataset(self.version.ref, dest, project=self.project))

    def _tabular_files(self) -> tuple[str, list[Path]]:
        root = self.path()
        files = [root / f.path for f in self.version.files]
        kinds = {table_format(p) for p in files}
        if len(kinds) != 1 or None in kinds:
            raise InvalidInput(
                f"{self.version.ref} is not one kind of table file (CSV, Parquet or JSON Lines): "
                "use .path() to read its files"
            )
        return kinds.pop() or "", files

    def to_arrow(self) -> Any:
        """All table files of the version as one Arrow table."""
        import pyarrow.dataset as ds

        kind, files = self._tabular_files()
        return ds.dataset([str(f) for f in files], format=kind).to_table()

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()


__all__ = ["Dataset", "add", "get", "ls", "tag", "versions"]
