"""The projects domain's public nouns."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PROJECT = "default"


@dataclass(frozen=True, slots=True)
class Project:
    project_id: int
    name: str
    description: str
    created_at: int
