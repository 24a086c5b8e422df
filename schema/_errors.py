"""Errors raised by the schema and storage layer; translated at the boundary."""

from __future__ import annotations


class SchemaError(Exception):
    """Base error of the `schema` package."""


class StorageError(SchemaError):
    """The database cannot be opened or used (missing file, bad URL, I/O)."""


class WrongKeyError(StorageError):
    """The database key does not open the database file."""


class FieldError(SchemaError):
    """A value is invalid for a named field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFoundError(SchemaError):
    """A record does not exist (or is not visible to the caller)."""


class ConflictError(SchemaError):
    """A write conflicts with current state (duplicate unique key, stale state)."""
