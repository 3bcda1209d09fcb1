"""UTC spending windows of key caps: day, week (Monday start) and month, all starting at 00:00 UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from tollway.clock import datetime_to_us, us_to_datetime


class LimitReset(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


def window_start_us(reset: LimitReset, at_us: int) -> int:
    moment = us_to_datetime(at_us)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if reset is LimitReset.DAILY:
        start = day
    elif reset is LimitReset.WEEKLY:
        start = day - timedelta(days=day.weekday())
    else:
        start = day.replace(day=1)
    return datetime_to_us(start)


def next_reset_us(reset: LimitReset, at_us: int) -> int:
    start = us_to_datetime(window_start_us(reset, at_us))
    if reset is LimitReset.DAILY:
        following = start + timedelta(days=1)
    elif reset is LimitReset.WEEKLY:
        following = start + timedelta(days=7)
    elif start.month == 12:
        following = start.replace(year=start.year + 1, month=1)
    else:
        following = start.replace(month=start.month + 1)
    return datetime_to_us(following)


def parse_limit_reset(value: object) -> LimitReset | None:
    """Accept null, '' or one of daily/weekly/monthly; anything else is a ValueError naming the choices."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return LimitReset(value.lower())
        except ValueError:
            pass
    raise ValueError(f"limit_reset must be one of daily, weekly, monthly or null, got {value!r}")
