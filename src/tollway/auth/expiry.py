"""When a key stops working: its `expires_at`, as the API, the CLI and the dashboard accept it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tollway.clock import datetime_to_us
from tollway.errors import InvalidRequest


def parse_expires_at(value: Any, now_us: int) -> int | None:
    """An ISO-8601 UTC time in the future, or null (never expires)."""
    if value is None:
        return None
    example = "such as 2027-01-01T00:00:00Z"
    if not isinstance(value, str):
        raise InvalidRequest(
            f"expires_at must be an ISO-8601 UTC time {example}, or null", metadata={"field": "expires_at"}
        )
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(
            f"expires_at is not an ISO-8601 time: {value[:64]!r}; send one {example}", metadata={"field": "expires_at"}
        ) from exc
    offset = moment.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise InvalidRequest("expires_at must be in UTC (end it with Z or +00:00)", metadata={"field": "expires_at"})
    try:
        expires_at_us = datetime_to_us(moment)
    except (ValueError, OverflowError) as exc:
        raise InvalidRequest("expires_at is out of range", metadata={"field": "expires_at"}) from exc
    if expires_at_us <= now_us:
        raise InvalidRequest(
            f"expires_at {value[:64]} is not in the future; send a later time or null", metadata={"field": "expires_at"}
        )
    return expires_at_us
