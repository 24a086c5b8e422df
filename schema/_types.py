"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """An instant stored in UTC and always returned timezone-aware.

    SQLite has no time zone type; storing naive UTC there and tagging it on the way
    out gives both backends the same Python values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("instants must be timezone-aware datetimes")
        instant: datetime = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return instant.replace(tzinfo=None)
        return instant

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        general = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite":
            return general
        parse = datetime.fromisoformat

        # SQLAlchemy parses SQLite's stored text with a regular expression and then
        # tags the zone: eight times slower than the C parser, on every instant read.
        # The text it writes ("2026-11-27 08:00:05.123000", always this long) is ISO
        # 8601 as it stands; any other text gets SQLAlchemy's own processing.
        def process(value: Any) -> datetime | None:
            if value.__class__ is str and len(value) == 26 and value[10] == " ":
                try:
                    instant: datetime = parse(value + "+00:00")
                    return instant
                except ValueError:
                    pass
            return general(value) if general is not None else value
        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC, millisecond precision."""
    now = datetime.now(UTC)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)
