"""The mainland China working calendar and local days (conventions.md: deadlines in
working days follow the official calendar, adjusted working weekends 调休 included)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
"""Where the regulations' days begin and end (a node may show another zone)."""


@lru_cache(maxsize=16)
def _calendar(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("CN", years=year)


def is_working_day(day: date) -> bool:
    """Whether `day` is a working day in mainland China (holidays off, 调休 weekends on)."""
    return bool(_calendar(day.year).is_working_day(day))


def holiday_name(day: date) -> str | None:
    """The public holiday on `day`, if any (for holiday care reminders)."""
    name = _calendar(day.year).get(day)
    return str(name) if name else None


def local_day(instant: datetime) -> date:
    """The calendar day of `instant` in Asia/Shanghai."""
    return instant.astimezone(LOCAL_TZ).date()


def add_working_days(day: date, n: int) -> date:
    """The `n`-th working day after `day` (not counting `day` itself)."""
    if n < 0:
        raise ValueError("n must not be negative")
    while n:
        day += timedelta(days=1)
        if is_working_day(day):
            n -= 1
    return day


def end_of_local_day(day: date) -> datetime:
    """The last instant of `day` in Asia/Shanghai, as UTC."""
    return (datetime.combine(day + timedelta(days=1), time(), LOCAL_TZ)
            - timedelta(microseconds=1)).astimezone(UTC)


def working_deadline(start: datetime, n: int) -> datetime:
    """The end of the `n`-th working day after the local day of `start` (e.g. filing
    within 5 working days of registration)."""
    return end_of_local_day(add_working_days(local_day(start), n))
