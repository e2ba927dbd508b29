"""The one error hierarchy of mlplane.

Services raise these; the server maps each class to one HTTP status
(``mlplane.server.errors``), the SDK's HTTP transport maps statuses back,
and the CLI prints the message and exits non-zero. Messages say what to
change. Some classes also derive from a built-in so existing ``except``
clauses keep working.
"""

from __future__ import annotations

from typing import Any


class MlplaneError(Exception):
    """Root of every error mlplane raises on purpose."""

    code = "INTERNAL_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class InvalidInput(MlplaneError, ValueError):
    """The request is malformed or violates a rule; the message says what to change."""

    code = "INVALID_INPUT"


class NotFound(MlplaneError, LookupError):
    """The named object does not exist (or the caller may not know it exists)."""

    code = "NOT_FOUND"


class AlreadyExists(MlplaneError):
    """An object with this identity exists already."""

    code = "ALREADY_EXISTS"


class Conflict(MlplaneError):
    """The change contradicts the current state (e.g. rewriting a write-once param)."""

    code = "CONFLICT"


class Unauthenticated(MlplaneError):
    """No valid credentials were presented."""

    code = "UNAUTHENTICATED"


class PermissionDenied(MlplaneError, PermissionError):
    """The caller is known but not allowed to do this."""

    code = "PERMISSION_DENIED"


class PayloadTooLarge(MlplaneError):
    """The request body or batch exceeds a configured limit."""

    code = "PAYLOAD_TOO_LARGE"


class RateLimited(MlplaneError):
    """Too many requests; retry after ``details['retry_after']`` seconds."""

    code = "RATE_LIMITED"


class BudgetExceeded(MlplaneError):
    """A cost budget would be exceeded."""

    code = "BUDGET_EXCEEDED"


class QualityGateFailed(MlplaneError):
    """A blocking data-quality expectation failed."""

    code = "QUALITY_GATE_FAILED"


class UnsafeArtifact(MlplaneError):
    """A security scan found an artifact unsafe to load."""

    code = "UNSAFE_ARTIFACT"


class TamperedArtifact(MlplaneError):
    """Stored content no longer matches its recorded digest."""

    code = "TAMPERED_ARTIFACT"


class SchemaOutdated(MlplaneError):
    """The metadata database needs ``mlplane db upgrade``."""

    code = "SCHEMA_OUTDATED"


class Unavailable(MlplaneError, ConnectionError):
    """A backing service (database, blob store, server) cannot be reached right now."""

    code = "UNAVAILABLE"


__all__ = [
    "AlreadyExists",
    "BudgetExceeded",
    "Conflict",
    "InvalidInput",
    "MlplaneError",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "QualityGateFailed",
    "RateLimited",
    "SchemaOutdated",
    "TamperedArtifact",
    "Unauthenticated",
    "Unavailable",
    "UnsafeArtifact",
]
