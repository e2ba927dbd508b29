"""The seam between the import and where MLflow's history is read from.

:class:`MlflowSource` has three implementations: a tracking server over its
REST API (``_rest``), a file store folder (``mlruns``, ``_filestore``) and
MLflow's SQL database (``_sql``). :func:`open_source` picks one from what the
user typed after ``--from``.

Artifacts are named by URIs as MLflow records them. Each source resolves the
URIs it can reach (``models:/m-…`` and ``runs:/…`` first, with
:meth:`MlflowSource.resolve`) and lists and copies files under them.
"""

from __future__ import annotations

import abc
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlplane.errors import InvalidInput
from mlplane.importers.mlflow._entities import (
    SrcExperiment,
    SrcFile,
    SrcModel,
    SrcModelVersion,
    SrcRun,
)

MetricPoint = tuple[str, float, int, int]
"""(key, value, timestamp in ms, step)."""


class MlflowSource(abc.ABC):
    """Read access to one MLflow store.

    Attributes:
        label: Where the history comes from, for messages and the import tags.
    """

    label: str

    @abc.abstractmethod
    def experiments(self) -> list[SrcExperiment]:
        """Every experiment, deleted ones included."""

    @abc.abstractmethod
    def runs(self, experiment_id: str) -> Iterator[SrcRun]:
        """Every run of an experiment, deleted ones included."""

    @abc.abstractmethod
    def metric_history(self, run: SrcRun) -> list[MetricPoint]:
        """Every metric point the run logged, all keys."""

    @abc.abstractmethod
    def models(self) -> list[SrcModel]:
        """Every registered model, with its aliases."""

    @abc.abstractmethod
    def model_versions(self, name: str) -> list[SrcModelVersion]:
        """The versions of one registered model, oldest first."""

    @abc.abstractmethod
    def resolve(self, uri: str) -> str:
        """An artifact URI this source can list: ``models:/m-…`` and ``runs:/…`` resolved."""

    @abc.abstractmethod
    def list_files(self, uri: str) -> list[SrcFile]:
        """Every file under a resolved artifact URI, recursively; empty when there is none."""

    @abc.abstractmethod
    def download(self, uri: str, path: str, dest: Path) -> None:
        """Copy the file ``path`` (relative to ``uri``) to ``dest``."""

    def model_uri(self, version: SrcModelVersion) -> str:
        """Where a model version's files are, resolved."""
        return self.resolve(version.storage_location or version.source)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class LocalArtifacts:
    """Artifact URIs that name local folders: what file stores and SQL databases record.

    ``mlflow-artifacts:/…`` URIs (a server that proxied its artifacts) are
    found under ``artifacts_root``, the server's ``--artifacts-destination``.
    """

    def __init__(self, artifacts_root: Path | None) -> None:
        self.artifacts_root = artifacts_root

    def path(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            return Path(unquote(parsed.path) if parsed.scheme else uri)
        if parsed.scheme == "mlflow-artifacts":
            if self.artifacts_root is None:
                raise InvalidInput(
                    f"artifacts are at {uri}, served by an MLflow server: pass --artifacts-root "
                    "with the folder the server stored them in (its --artifacts-destination)"
                )
            return self.artifacts_root / unquote(parsed.path).lstrip("/")
        if len(parsed.scheme) == 1:  # a Windows drive letter, not a scheme
            return Path(uri)
        raise InvalidInput(
            f"artifacts at {uri} are in a {parsed.scheme!r} store, which this import cannot "
            "read: copy them to a local folder and pass it as --artifacts-root"
        )

    def list_files(self, uri: str) -> list[SrcFile]:
        root = self.path(uri)
        if not root.is_dir():
            return []
        return [
            SrcFile(p.relative_to(root).as_posix(), p.stat().st_size)
            for p in sorted(root.rglob("*"))
            if p.is_file()
        ]

    def download(self, uri: str, path: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path(uri) / path, dest)


def join_uri(uri: str, path: str) -> str:
    """``uri/path``; either may be empty."""
    path = path.strip("/")
    if not uri:
        return path
    return f"{uri.rstrip('/')}/{path}" if path else uri


def open_source(spec: str, *, artifacts_root: str | None = None) -> MlflowSource:
    """The source ``spec`` names: ``http(s)://`` a server, a database URL, else a folder.

    Raises:
        InvalidInput: ``spec`` is neither, or the folder is not an MLflow file store.
        Unavailable: the server or database cannot be reached.
    """
    root = Path(artifacts_root).expanduser() if artifacts_root else None
    if root is not None and not root.is_dir():
        raise InvalidInput(f"--artifacts-root {artifacts_root} is not a folder")
    if spec.startswith(("http://", "https://")):
        from mlplane.importers.mlflow._rest import RestSource

        return RestSource(spec)
    if "://" in spec and not spec.startswith("file:"):
        from mlplane.importers.mlflow._sql import SqlSource

        return SqlSource(spec, artifacts_root=root)
    from mlplane.importers.mlflow._filestore import FileStoreSource

    folder = Path(unquote(urlparse(spec).path) if spec.startswith("file:") else spec)
    return FileStoreSource(folder.expanduser(), artifacts_root=root)
