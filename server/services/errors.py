"""Shorthands for the errors services raise (translated to HTTP at the boundary)."""

from __future__ import annotations

from schema import ConflictError, FieldError, NotFoundError
from server.errors import AuthError, ForbiddenError, ThrottledError

__all__ = [
    "AuthError", "ConflictError", "FieldError", "ForbiddenError", "NotFoundError",
    "ThrottledError",
]
