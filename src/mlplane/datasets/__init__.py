"""Versioned datasets: immutable, content-addressed, encrypted at rest."""

from mlplane.datasets.entities import AddResult, DatasetFile, DatasetVersion

__all__ = ["AddResult", "DatasetFile", "DatasetVersion"]
