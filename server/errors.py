"""The server package's errors and their translation to HTTP problem details."""

from __future__ import annotations


class NodeError(Exception):
    """Base error of the `server` package: a node cannot do what was asked."""


class AuthError(NodeError):
    """Missing, invalid or expired credentials (HTTP 401)."""


class ForbiddenError(NodeError):
    """The caller may not do this (HTTP 403)."""


class ThrottledError(NodeError):
    """Too many attempts (HTTP 429)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BadRequestError(NodeError):
    """A request that cannot be understood (HTTP 400)."""
