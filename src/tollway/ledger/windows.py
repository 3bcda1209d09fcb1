"""UTC spending windows of key caps: day, week (Monday start) and month, all starting at 00:00 UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from tollway.auth.records import LimitReset
from tollway.clock import datetime_to_us, us_to_datetime

_DAY_US = 86_400_000_000
# 1970-01-01 was a Thursday: day numbers shifted by 3 make Monday weekday 0.
_EPOCH_WEEKDAY_SHIFT = 3


@lru_cache(maxsize=64)
def _month_start_us(day_number: int) -> int:
    moment = us_to_datetime(day_number * _DAY_US)
    return datetime_to_us(datetime(moment.year, moment.month, 1, tzinfo=UTC))


def window_start_us(reset: LimitReset, at_us: int) -> int:
    """Start of the UTC window holding `at_us`; integer arithmetic, as it runs on every settlement."""
    day_number = at_us // _DAY_US
    if reset is LimitReset.DAILY:
        return day_number * _DAY_US
    if reset is LimitReset.WEEKLY:
        return (day_number - (day_number + _EPOCH_WEEKDAY_SHIFT) % 7) * _DAY_US
    return _month_start_us(day_number)


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
