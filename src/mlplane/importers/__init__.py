"""Importers: bring history kept by other tools into mlplane.

``importers.mlflow`` reads an MLflow tracking server, file store or database
(``mlplane import mlflow --from …``).
"""

from __future__ import annotations
