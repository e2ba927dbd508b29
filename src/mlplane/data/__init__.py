"""Versioned datasets: immutable, content-addressed, encrypted at rest."""

from mlplane.data.entities import AddResult, DatasetFile, DatasetVersion

__all__ = ["AddResult", "DatasetFile", "DatasetVersion"]
