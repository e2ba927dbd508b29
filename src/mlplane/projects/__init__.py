"""Projects: ownership, roles, budgets and tags hang off a project."""

from mlplane.projects.entities import DEFAULT_PROJECT, Project

__all__ = ["DEFAULT_PROJECT", "Project"]
