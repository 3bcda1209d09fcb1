from __future__ import annotations

from datetime import UTC, datetime

from tollway.auth.records import LimitReset
from tollway.clock import datetime_to_us, us_to_iso
from tollway.ledger.windows import next_reset_us, window_start_us


def at(text: str) -> int:
    return datetime_to_us(datetime.fromisoformat(text).replace(tzinfo=UTC))


def test_windows_start_at_utc_midnight_monday_and_first_of_month() -> None:
    moment = at("2026-11-28T15:30:00")  # a Saturday
    assert us_to_iso(window_start_us(LimitReset.DAILY, moment)) == "2026-11-28T00:00:00.000Z"
    assert us_to_iso(window_start_us(LimitReset.WEEKLY, moment)) == "2026-11-23T00:00:00.000Z"
    assert us_to_iso(window_start_us(LimitReset.MONTHLY, moment)) == "2026-11-01T00:00:00.000Z"


def test_next_resets_roll_over_years() -> None:
    moment = at("2026-12-31T23:59:59")
    assert us_to_iso(next_reset_us(LimitReset.DAILY, moment)) == "2027-01-01T00:00:00.000Z"
    assert us_to_iso(next_reset_us(LimitReset.MONTHLY, moment)) == "2027-01-01T00:00:00.000Z"
    assert us_to_iso(next_reset_us(LimitReset.WEEKLY, moment)) == "2027-01-04T00:00:00.000Z"
