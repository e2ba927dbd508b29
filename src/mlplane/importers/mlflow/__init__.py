"""Import MLflow's history: experiments, runs, artifacts, registered models and aliases.

Use::

    source = open_source("http://mlflow:5000")        # or ./mlruns, sqlite:///mlflow.db
    report = MlflowImport(mlplane.Client(), source).run()

Sources (:class:`MlflowSource`): a tracking server over REST (``RestSource``), a
file store folder (``FileStoreSource``), MLflow's SQL database (``SqlSource``,
with ``artifacts_root`` for the artifacts a server stored). The import is
resumable: see :mod:`._import` for how objects are matched on a second run.
"""

from __future__ import annotations

from mlplane.importers.mlflow._filestore import FileStoreSource
from mlplane.importers.mlflow._import import MlflowImport
from mlplane.importers.mlflow._report import KINDS, Failure, ImportReport, Tally
from mlplane.importers.mlflow._rest import RestSource
from mlplane.importers.mlflow._source import MlflowSource, open_source
from mlplane.importers.mlflow._sql import SqlSource
from mlplane.importers.mlflow._tags import TAG_DONE, TAG_SOURCE, TAG_SOURCE_ID

__all__ = [
    "KINDS",
    "TAG_DONE",
    "TAG_SOURCE",
    "TAG_SOURCE_ID",
    "Failure",
    "FileStoreSource",
    "ImportReport",
    "MlflowImport",
    "MlflowSource",
    "RestSource",
    "SqlSource",
    "Tally",
    "open_source",
]
