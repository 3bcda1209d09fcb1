"""Plain-words explanations of what limits a key, shared by /balance, refusals and the CLI.

Each has a stable `code` (never renamed), one standalone sentence and its figures; a refusal's
`error.metadata.explanation` is the same object as the matching /balance entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tollway.clock import us_to_datetime, us_to_iso
from tollway.money import format_usd, nanos_to_usd


@dataclass(frozen=True, slots=True)
class Explanation:
    code: str
    message: str
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.figures}


def when(epoch_us: int) -> str:
    """A reset time as people read it: '1 Dec 00:00 UTC'."""
    moment = us_to_datetime(epoch_us)
    return f"{moment.day} {moment.strftime('%b')} {moment.strftime('%H:%M')} UTC"


def balance_negative(balance_nanos: int) -> Explanation:
    return Explanation(
        "balance_negative",
        f"Your balance is negative ({format_usd(balance_nanos)} USD), so every request, free models included, "
        "is refused until you add credits.",
        {"balance": nanos_to_usd(balance_nanos)},
    )


def balance_empty() -> Explanation:
    return Explanation(
        "balance_empty",
        "Your balance is 0.00 USD, so paid models are refused until you add credits; free models still work.",
        {"balance": 0},
    )


def insufficient_for_request(
    needed_nanos: int, available_nanos: int, balance_nanos: int, tokens: int, affordable: int
) -> Explanation:
    return Explanation(
        "insufficient_for_request",
        f"This request needs up to {format_usd(needed_nanos)} USD ({tokens} output tokens at most) but "
        f"{format_usd(max(available_nanos, 0))} USD of your {format_usd(balance_nanos)} USD balance is available, "
        f"enough for {affordable} output tokens.",
        {"needed": nanos_to_usd(needed_nanos), "available": nanos_to_usd(max(available_nanos, 0))},
    )


def key_cap_exhausted(period: str, limit_nanos: int, resets_at_us: int | None) -> Explanation:
    until = f" until {when(resets_at_us)}" if resets_at_us is not None else ""
    return Explanation(
        "key_cap_exhausted",
        f"This key's {period} cap of {format_usd(limit_nanos)} USD is used up{until}, so requests with this key "
        "are refused; raise its cap or use another key (adding credits does not lift a key cap).",
        {
            "limit": nanos_to_usd(limit_nanos),
            "limit_reset": None if period == "total" else period,
            "resets_at": us_to_iso(resets_at_us),
        },
    )


def key_cap_insufficient(period: str, needed_nanos: int, left_nanos: int, affordable: int) -> Explanation:
    return Explanation(
        "key_cap_insufficient",
        f"This request needs up to {format_usd(needed_nanos)} USD but this key's {period} cap leaves "
        f"{format_usd(max(left_nanos, 0))} USD, enough for {affordable} output tokens.",
        {"needed": nanos_to_usd(needed_nanos), "limit_remaining": nanos_to_usd(max(left_nanos, 0))},
    )


def payment_pending(count: int, amount_nanos: int) -> Explanation:
    return Explanation(
        "payment_pending",
        f"{count} payment{'s' if count != 1 else ''} of {format_usd(amount_nanos)} USD in total "
        f"{'are' if count != 1 else 'is'} pending: credited as soon as the payment provider confirms "
        f"{'them' if count != 1 else 'it'}.",
        {"pending_amount": nanos_to_usd(amount_nanos), "pending_count": count},
    )


def free_daily_cap(limit: int, unlocked: bool, resets_at_us: int) -> Explanation:
    hint = "" if unlocked else " Purchasing at least 10 USD of credits in total raises it to 1000 a day."
    return Explanation(
        "free_daily_cap",
        f"You have used all {limit} free-model requests for today; they reset at 00:00 UTC.{hint}",
        {"limit_per_day": limit, "resets_at": us_to_iso(resets_at_us)},
    )


def free_per_minute(limit: int) -> Explanation:
    return Explanation(
        "free_per_minute",
        f"Free models allow {limit} requests per minute per account; wait a few seconds and retry.",
        {"limit_per_minute": limit},
    )


def rate_limited(limit_id: str, limit: int, reset_at_us: int) -> Explanation:
    return Explanation(
        "rate_limited",
        f"The {limit_id} limit of {limit} is reached; requests are refused until it frees up.",
        {"limit": limit_id, "limit_value": limit, "reset_at": us_to_iso(reset_at_us)},
    )


def max_tokens_lowered(spendable_nanos: int, tokens: int, model: str) -> Explanation:
    return Explanation(
        "max_tokens_lowered",
        f"You can spend {format_usd(spendable_nanos)} USD now, enough for about {tokens} output tokens on {model}; "
        "requests without max_tokens are sent with max_tokens lowered to what you can pay.",
        {"spendable_now": nanos_to_usd(spendable_nanos), "affordable_tokens": tokens, "model": model},
    )


def key_disabled() -> Explanation:
    return Explanation(
        "key_disabled", "This API key is disabled, so its requests are refused; enable it or use another key."
    )


def key_expired(expires_at_us: int) -> Explanation:
    return Explanation(
        "key_expired",
        f"This API key expired at {us_to_iso(expires_at_us)}, so its requests are refused (401); "
        "create a new key, or have a management key set a later expires_at.",
        {"expires_at": us_to_iso(expires_at_us)},
    )


def key_expires_soon(expires_at_us: int) -> Explanation:
    return Explanation(
        "key_expires_soon",
        f"This API key expires at {us_to_iso(expires_at_us)} ({when(expires_at_us)}); from then on its requests "
        "are refused (401 key_expired). Create a new key, or have a management key set a later expires_at.",
        {"expires_at": us_to_iso(expires_at_us)},
    )


def key_cap(period: str, limit_nanos: int, left_nanos: int, resets_at_us: int | None) -> Explanation:
    until = f" until {when(resets_at_us)}" if resets_at_us is not None else ""
    return Explanation(
        "key_cap",
        f"This key has a {period} cap of {format_usd(limit_nanos)} USD with {format_usd(max(left_nanos, 0))} USD "
        f"left{until}; a request that may cost more than what is left is refused (402 key_cap_insufficient), and "
        "once it is used up every request with this key is (403 key_cap_exhausted), whatever your balance.",
        {
            "limit": nanos_to_usd(limit_nanos),
            "limit_remaining": nanos_to_usd(max(left_nanos, 0)),
            "limit_reset": None if period == "total" else period,
            "resets_at": us_to_iso(resets_at_us),
        },
    )


def management_key() -> Explanation:
    return Explanation(
        "management_key",
        "This is a management key: it reads figures and manages keys but cannot make completions (403); "
        "use an inference key (sk-tw-v1-...).",
    )


def limits_not_visible(limit_ids: list[str]) -> Explanation:
    return Explanation(
        "limits_not_visible",
        f"Rate limits apply ({', '.join(limit_ids)}) but their live usage is kept inside the server process, "
        "so this command cannot tell whether one is reached now; GET /api/v1/balance with the key can.",
        {"limits": limit_ids},
    )


def tokens_left(limit_id: str, limit: int, remaining: int, reset_at_us: int) -> Explanation:
    """A tokens-per-minute limit partly used: a request whose prompt counts more than what is left gets a 429."""
    return Explanation(
        "rate_limited",
        f"The {limit_id} limit of {limit} has {remaining} tokens left now; a request whose prompt counts more is "
        "refused until they free up.",
        {"limit": limit_id, "limit_value": limit, "remaining": remaining, "reset_at": us_to_iso(reset_at_us)},
    )
