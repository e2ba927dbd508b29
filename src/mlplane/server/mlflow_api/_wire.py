"""MLflow's wire conventions, in one place: error bodies, status codes, JSON responses.

Every route of the MLflow-compatible API is an :class:`MlflowRoute`, so a domain
error anywhere below it becomes ``{"error_code", "message"}`` with MLflow's
status for that code. The stock client decides what to do from these: a 404 with
``RESOURCE_DOES_NOT_EXIST`` makes ``set_experiment`` create the experiment, a 400
with ``RESOURCE_ALREADY_EXISTS`` makes ``register_model`` add a version, and any
5xx is retried seven times with backoff, so a client error must never be a 5xx.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlplane import errors

log = logging.getLogger("mlplane.server.mlflow_api")

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")
"""The tracking and registry API is served under both (the MLflow UI uses ``ajax-api``)."""

# MLflow's databricks error codes and the status its server sends for each.
STATUS: dict[str, int] = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "INVALID_STATE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "MALFORMED_REQUEST": 400,
    "INVALID_REQUEST": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "RESOURCE_LIMIT_EXCEEDED": 429,
    "INTERNAL_ERROR": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
}

# Our error classes → MLflow error codes (first match along the MRO).
CODES: dict[type[errors.MlplaneError], str] = {
    errors.InvalidInput: "INVALID_PARAMETER_VALUE",
    errors.Unauthenticated: "UNAUTHENTICATED",
    errors.PermissionDenied: "PERMISSION_DENIED",
    errors.NotFound: "RESOURCE_DOES_NOT_EXIST",
    errors.AlreadyExists: "RESOURCE_ALREADY_EXISTS",
    errors.Conflict: "INVALID_PARAMETER_VALUE",
    errors.PayloadTooLarge: "RESOURCE_LIMIT_EXCEEDED",
    errors.QualityGateFailed: "INVALID_STATE",
    errors.UnsafeArtifact: "INVALID_STATE",
    errors.TamperedArtifact: "INVALID_STATE",
    errors.BudgetExceeded: "RESOURCE_LIMIT_EXCEEDED",
    errors.RateLimited: "REQUEST_LIMIT_EXCEEDED",
    errors.SchemaOutdated: "TEMPORARILY_UNAVAILABLE",
    errors.Unavailable: "TEMPORARILY_UNAVAILABLE",
    errors.MlplaneError: "INTERNAL_ERROR",
}


class MlflowError(Exception):
    """A client error that must carry a specific MLflow error code.

    It lives only at this boundary, outside :mod:`mlplane.errors`: the domain's own
    errors reach MLflow's codes through ``CODES``, and the server's one-status-per-class
    table (``mlplane.server.errors.STATUS``, pinned by a test) stays about the domain.
    """

    def __init__(self, message: str, error_code: str = "INVALID_PARAMETER_VALUE") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


def code_for(exc: errors.MlplaneError | MlflowError) -> str:
    if isinstance(exc, MlflowError):
        return exc.error_code
    for cls in type(exc).__mro__:
        if cls in CODES:
            return CODES[cls]  # type: ignore[index]
    return "INTERNAL_ERROR"


def ok(content: Any = None, status: int = 200) -> Response:
    """A JSON response; ``None`` is MLflow's empty ``{}``. Non-finite floats are the
    caller's job (MLflow sends them as the JSON tokens ``NaN``/``Infinity``)."""
    body = orjson.dumps({} if content is None else content)
    return Response(body, status_code=status, media_type="application/json")


def error(code: str, message: str) -> Response:
    body = orjson.dumps({"error_code": code, "message": message})
    return Response(body, status_code=STATUS.get(code, 400), media_type="application/json")


def error_for(exc: BaseException) -> Response:
    """The MLflow error response for any exception raised below a route."""
    if isinstance(exc, MlflowError):
        return error(exc.error_code, exc.message)
    if isinstance(exc, errors.MlplaneError):
        code = code_for(exc)
        return error(code, exc.message)
    if isinstance(exc, RequestValidationError):
        parts = []
        for err in exc.errors()[:10]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return error("INVALID_PARAMETER_VALUE", "; ".join(parts) or "invalid request")
    if isinstance(exc, StarletteHTTPException):
        by_status = {
            404: "ENDPOINT_NOT_FOUND",
            405: "ENDPOINT_NOT_FOUND",
            413: "RESOURCE_LIMIT_EXCEEDED",
        }
        return error(by_status.get(exc.status_code, "BAD_REQUEST"), str(exc.detail))
    if isinstance(exc, (ValueError, orjson.JSONDecodeError)):
        return error("MALFORMED_REQUEST", f"malformed request: {exc}")
    log.exception("unhandled error in the MLflow-compatible API")
    return error("INTERNAL_ERROR", "internal server error")


class MlflowRoute(APIRoute):
    """A route whose errors are MLflow error bodies instead of problem+json."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # every error leaves as an MLflow error body
                return error_for(exc)

        return route
