"""Projects: ownership, roles, budgets and tags hang off a project."""

from mlplane.projects.service import DEFAULT_PROJECT

__all__ = ["DEFAULT_PROJECT"]
