"""The tags that map our objects back to the MLflow objects they were imported from."""

from __future__ import annotations

TAG_SOURCE_ID = "mlplane.import.source_id"
"""The MLflow id: experiment id, run id, or ``model/version`` on a model version."""
TAG_SOURCE = "mlplane.import.source"
"""Where it was imported from (a server URL, a folder, a database URL without password)."""
TAG_DONE = "mlplane.import.done"
"""On a run, once everything of it is imported; a run without it is redone on resume."""
