"""Versioned datasets from Python: ``mlplane.data.add(...)``, ``mlplane.data.get("name@3")``.

A thin face over :class:`mlplane.Client` (which picks the store from
``MLPLANE_URI``); the rules live in :mod:`mlplane.datasets.service`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplane.datasets.entities import DatasetLineage, DatasetVersion
from mlplane.datasets.localcache import VersionCache
from mlplane.errors import InvalidInput
from mlplane.projects import DEFAULT_PROJECT

if TYPE_CHECKING:
    from mlplane.datasets.contracts import Contract
    from mlplane.datasets.diff import VersionDiff


def _client() -> Any:
    from mlplane import fluent

    return fluent.client()


def add(
    name: str,
    source: str | os.PathLike[str] | Any,
    *,
    contract: str | os.PathLike[str] | Mapping[str, Any] | Contract | None = None,
    pii: str | Mapping[str, str] | None = None,
    project: str = DEFAULT_PROJECT,
) -> DatasetVersion:
    """Store a file, a folder or a pandas DataFrame (as Parquet) as the next version of
    ``name``; nothing new is made when the content is unchanged.

    Args:
        contract: quality expectations (a YAML file, YAML text, a mapping or a
            ``Contract``); a failed blocking one raises ``QualityGateFailed``.
        pii: ``"mask"``, ``"hash"``, ``"drop"``, ``"block"``, ``"allow"`` or a mapping of
            column to policy (``"*"`` for the rest). Without one, PII is detected and the
            version flagged, which keeps it from being a training input.
    """
    from mlplane.datasets.contracts import load_contract

    transport = _client().transport
    text = load_contract(contract).to_json() if contract is not None else None
    if hasattr(source, "to_parquet"):
        with tempfile.TemporaryDirectory(prefix="mlplane-df-") as tmp:
            path = Path(tmp) / f"{name.partition('@')[0]}.parquet"
            source.to_parquet(path, index=False)
            result = transport.add_dataset(
                name, path, project=project, progress=None, contract=text, pii=pii
            )
    else:
        result = transport.add_dataset(
            name, source, project=project, progress=None, contract=text, pii=pii
        )
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


def diff(before: str, after: str, *, project: str = DEFAULT_PROJECT) -> VersionDiff:
    """Files, schema, row counts and per-column shifts between two versions (from profiles)."""
    from mlplane.datasets.diff import diff_versions

    transport = _client().transport
    return diff_versions(
        transport.get_dataset(before, project=project),
        transport.get_dataset(after, project=project),
    )


def lineage(ref: str, *, project: str = DEFAULT_PROJECT) -> DatasetLineage:
    """Where a version came from and the runs and versions downstream of it."""
    return _client().transport.dataset_lineage(ref, project=project)  # type: ignore[no-any-return]


def sample(
    ref: str,
    fraction: float,
    *,
    seed: int = 0,
    into: str | None = None,
    project: str = DEFAULT_PROJECT,
) -> DatasetVersion:
    """A reproducible sample of a version, stored as a version of ``into``
    (default ``<name>-sample``)."""
    result = _client().transport.sample_dataset(
        ref, fraction=fraction, seed=seed, into=into, project=project
    )
    return result.version  # type: ignore[no-any-return]


def sql(query: str, *, project: str = DEFAULT_PROJECT) -> Any:
    """Run DuckDB SQL over versions named as ``'name@version'``; returns an Arrow table."""
    return sql_relation(query, project=project).to_arrow_table()


def sql_relation(query: str, *, project: str = DEFAULT_PROJECT) -> Any:
    """Like :func:`sql` but returns the DuckDB relation (to stream or COPY large results)."""
    from mlplane.datasets import sql as sql_mod

    def resolve(ref: str) -> tuple[str, list[Path]]:
        return get(ref, project=project)._tabular_files()

    return sql_mod.run(query, resolve)


def leakage(
    train: str,
    test: str,
    *,
    key: str | Sequence[str] | None = None,
    target: str | None = None,
    project: str = DEFAULT_PROJECT,
) -> Any:
    """Rows shared by two splits and features suspiciously predictive of the target."""
    from mlplane.datasets.leakage import check_leakage

    return check_leakage(
        get(train, project=project).to_arrow(),
        get(test, project=project).to_arrow(),
        key=key,
        target=target,
    )


@dataclass(frozen=True)
class Dataset:
    """A dataset version you can read: as files, a pandas DataFrame or an Arrow table."""

    version: DatasetVersion
    project: str = DEFAULT_PROJECT

    def path(self, dest: str | os.PathLike[str] | None = None) -> Path:
        """The version's files on local disk (a content-addressed cache unless ``dest``)."""
        client = _client()
        if dest is None:
            cache = VersionCache(
                client.settings.home / "cache" / "datasets", client.settings.cache_max_bytes
            )
            return cache.path(
                self.version.digest,
                lambda folder: client.transport.download_dataset(
                    self.version.ref, folder, project=self.project
                ),
                # The store checks and audits each read of unhandled PII: no cache hit skips it.
                refetch=self.version.pii_unhandled,
            )
        return Path(client.transport.download_dataset(self.version.ref, dest, project=self.project))

    def _tabular_files(self) -> tuple[str, list[Path]]:
        from mlplane.datasets.profile_data import table_format

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


__all__ = [
    "Dataset",
    "add",
    "diff",
    "get",
    "leakage",
    "lineage",
    "ls",
    "sample",
    "sql",
    "sql_relation",
    "tag",
    "versions",
]
