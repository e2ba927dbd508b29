"""Domain errors → HTTP, in one table: one status per error class, as problem+json."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlplane import errors

STATUS: dict[type[errors.MlplaneError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.QualityGateFailed: 422,
    errors.UnsafeArtifact: 422,
    errors.TamperedArtifact: 422,
    errors.BudgetExceeded: 402,
    errors.RateLimited: 429,
    errors.SchemaOutdated: 503,
    errors.Unavailable: 503,
    errors.MlplaneError: 500,
}
"""Every error class and its status; a test checks no class is missing."""

PROBLEM = "application/problem+json"
MLFLOW_PATHS = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/3.0/mlflow")
"""Paths of MLflow's API, whose clients expect MLflow's error bodies, not problem+json."""


def problem(status: int, title: str, detail: str, code: str, **extra: object) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code}
    body.update(extra)
    headers = {}
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def domain_response(path: str, exc: errors.MlplaneError) -> Response:
    """A domain error as the caller's API speaks it: MLflow's error body under MLflow's
    paths (stock clients read nothing else), problem+json everywhere else; both carry
    ``Retry-After`` when the error says when to retry. Used by the exception handler and by
    the middlewares that refuse before any route runs (authentication, rate limits)."""
    retry_after = exc.details.get("retry_after")
    if path.startswith(MLFLOW_PATHS):
        from mlplane.server.mlflow_api._wire import error_for

        response = error_for(exc)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response
    extra = {k: v for k, v in exc.details.items() if k in ("column", "retry_after")}
    return problem(status_for(exc), type(exc).__name__, exc.message, exc.code, **extra)


def status_for(exc: errors.MlplaneError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


def install(app: FastAPI) -> None:
    """Register the handlers once on the app."""

    @app.exception_handler(errors.MlplaneError)
    async def _domain(request: Request, exc: errors.MlplaneError) -> Response:
        if _ui_page(request):
            return _ui_error(request, status_for(exc), exc.message)
        return domain_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors()[:10]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        detail = "; ".join(parts) or "invalid request"
        if _ui_page(request):
            return _ui_error(request, 400, detail)
        return problem(422, "InvalidInput", detail, "INVALID_INPUT")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if _ui_page(request):
            return _ui_error(request, exc.status_code, str(exc.detail))
        if request.url.path.startswith(MLFLOW_PATHS):
            # Stock MLflow clients read only MLflow's error body (ENDPOINT_NOT_FOUND here).
            from mlplane.server.mlflow_api._wire import error_for

            return error_for(exc)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}.get(
            exc.status_code, "HTTP_ERROR"
        )
        return problem(exc.status_code, "HTTPError", str(exc.detail), code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # No stack traces or internal paths in responses.
        import logging

        logging.getLogger("mlplane.server").exception("unhandled error")
        if _ui_page(request):
            return _ui_error(request, 500, "internal server error")
        return problem(500, "InternalError", "internal server error", "INTERNAL_ERROR")


def _ui_page(request: Request) -> bool:
    """A page of the UI (not its JSON), whose errors are pages too."""
    path = request.url.path
    return path.startswith("/ui/") and not path.startswith(("/ui/api/", "/ui/static/"))


def _ui_error(request: Request, status: int, message: str) -> Response:
    from mlplane.ui.render import error_page

    return error_page(request, status, message)
