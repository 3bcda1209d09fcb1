"""What limits apply to whom: configured per account and per key, with defaults from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tollway.settings import LimitDefaults


class Period(StrEnum):
    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"

    @property
    def microseconds(self) -> int:
        return {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}[self.value] * 1_000_000

    @property
    def short(self) -> str:
        """OpenRouter's interval notation for /key's rate_limit: 1s, 1m, 1h, 1d."""
        return {"second": "1s", "minute": "1m", "hour": "1h", "day": "1d"}[self.value]


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """Limits of one subject; None means no such limit."""

    requests: int | None = None
    period: Period | None = None
    tokens_per_minute: int | None = None
    concurrency: int | None = None

    @classmethod
    def from_defaults(cls, config: LimitDefaults) -> LimitSpec:
        """The settings' defaults (requests without `per` count per minute)."""
        return cls(
            requests=config.requests,
            period=Period(config.per) if config.per else (Period.MINUTE if config.requests else None),
            tokens_per_minute=config.tokens_per_minute,
            concurrency=config.concurrency,
        )

    @property
    def empty(self) -> bool:
        return self.requests is None and self.tokens_per_minute is None and self.concurrency is None

    def merged_over(self, default: LimitSpec) -> LimitSpec:
        """This subject's own limits, falling back to the default for what it does not set."""
        own_requests = self.requests is not None
        return LimitSpec(
            requests=self.requests if own_requests else default.requests,
            period=self.period if own_requests else default.period,
            tokens_per_minute=self.tokens_per_minute
            if self.tokens_per_minute is not None
            else default.tokens_per_minute,
            concurrency=self.concurrency if self.concurrency is not None else default.concurrency,
        )


def parse_period(value: object) -> Period:
    aliases = {
        "s": "second",
        "1s": "second",
        "m": "minute",
        "1m": "minute",
        "h": "hour",
        "1h": "hour",
        "d": "day",
        "1d": "day",
    }
    if isinstance(value, str):
        text = aliases.get(value.strip().lower(), value.strip().lower())
        try:
            return Period(text)
        except ValueError:
            pass
    raise ValueError(f"per must be one of second, minute, hour, day (or 1s, 1m, 1h, 1d), got {value!r}")
