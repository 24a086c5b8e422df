"""Translating every error to RFC 9457 problem+json. No input produces a 500 page
with a traceback: unexpected errors are logged and answered with a bare 500."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from schema import ConflictError, FieldError, KeyMissingError, NotFoundError, SchemaError
from server.errors import (
    AuthError,
    BadRequestError,
    ForbiddenError,
    NodeError,
    ThrottledError,
)

log = logging.getLogger("branchline.http")
MEDIA = "application/problem+json"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    """A problem+json response."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=MEDIA, headers=headers)


def _validation_errors(extra: Any) -> list[dict[str, str]]:
    errors = []
    for item in extra if isinstance(extra, list) else []:
        if isinstance(item, dict):
            message = str(item.get("message", "invalid"))
            field = str(item.get("key") or "")
            if "- at `$." in message:  # msgspec: "Expected `int` - at `$.name`"
                message, _, where = message.partition(" - at `$.")
                field = where.rstrip("`")
            elif "- at `$`" in message:
                message = message.partition(" - at `$`")[0]
                field = "body"
            if message.startswith("Object contains unknown field `"):
                field = message.split("`")[1]
            elif field == "data":
                field = "body"
            errors.append({"field": field or "body", "message": message})
    return errors


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc.extra)
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        detail = f"{first['field']}: {first['message']}"
        if "UTF-8" in detail or "malformed" in detail.lower() or "JSON" in detail:
            return problem(400, detail, errors=errors)
        return problem(422 if errors and first["field"] != "body" else 400, detail, errors=errors)
    if status >= 500:
        log.error("HTTP %s on %s %s: %s", status, request.method, request.url.path, exc.detail)
        return problem(status, _TITLES.get(status, "Error"))
    return problem(
        status, exc.detail or _TITLES.get(status, "Error"), headers=dict(exc.headers or {})
    )


def handle_domain(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, FieldError):
        return problem(422, str(exc), errors=[{"field": exc.field, "message": exc.message}])
    if isinstance(exc, AuthError):
        return problem(401, str(exc), headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, ForbiddenError):
        return problem(403, str(exc))
    if isinstance(exc, NotFoundError):
        return problem(404, str(exc))
    if isinstance(exc, BadRequestError):
        return problem(400, str(exc))
    if isinstance(exc, ConflictError):
        return problem(409, str(exc))
    if isinstance(exc, KeyMissingError):
        return problem(403, str(exc))
    if isinstance(exc, UnicodeDecodeError):
        return problem(
            400,
            "body: is not valid UTF-8",
            errors=[{"field": "body", "message": "is not valid UTF-8"}],
        )
    if isinstance(exc, ThrottledError):
        return problem(429, str(exc), headers={"Retry-After": str(exc.retry_after)})
    log.error(
        "unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc
    )
    return problem(500, "internal error; the node's log has the details")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: handle_http,
    SchemaError: handle_domain,
    NodeError: handle_domain,
    Exception: handle_domain,
}
