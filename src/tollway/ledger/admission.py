"""What a refused reservation means, in plain words: pure decisions, no I/O.

After a hold does not fit, this decides whether to lower `max_tokens` (the client set none, and at
least `min_tokens` are affordable) or which refusal applies: negative balance, empty or
insufficient balance (402, account), or a key cap used up (403) or too small for this request (402, key).
"""

from __future__ import annotations

from dataclasses import dataclass

from tollway.errors import PaymentRequired, PermissionDenied, TollwayError
from tollway.ledger.book import AccountSnapshot, KeySnapshot
from tollway.ledger.pricing import Price
from tollway.ledger.windows import LimitReset
from tollway.money import format_usd


@dataclass(frozen=True, slots=True)
class CostPlan:
    price: Price
    prompt_tokens_estimate: int
    max_tokens: int
    max_tokens_requested: bool

    @property
    def hold_nanos(self) -> int:
        return self.price.cost_nanos(self.prompt_tokens_estimate, self.max_tokens)


@dataclass(frozen=True, slots=True)
class LowerMaxTokens:
    max_tokens: int


def _explanation(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _period_name(reset: LimitReset | None) -> str:
    return {
        None: "total",
        LimitReset.DAILY: "daily",
        LimitReset.WEEKLY: "weekly",
        LimitReset.MONTHLY: "monthly",
    }[reset]


def key_limit_exceeded(key: KeySnapshot) -> PermissionDenied:
    period = _period_name(key.limit_reset)
    limit = format_usd(key.limit_nanos or 0)
    message = (
        f"Key limit exceeded ({period} limit). This key's {period} cap of {limit} USD is used up; "
        "raise it with PATCH /api/v1/keys/{hash} or use another key. Adding credits does not lift a key cap."
    )
    sentence = f"This key's {period} cap of {limit} USD is used up, so requests with this key are refused."
    return PermissionDenied(
        message,
        metadata={"limit_source": "key", "explanation": _explanation("key_cap_exhausted", sentence)},
    )


def decide_refusal(
    plan: CostPlan, account: AccountSnapshot, key: KeySnapshot | None, min_tokens: int
) -> LowerMaxTokens | TollwayError:
    """Given figures under which `plan.hold_nanos` did not fit, say what to do instead."""
    balance = account.balance_nanos
    if balance < 0:
        sentence = (
            f"Your balance is negative ({format_usd(balance)} USD): every request, free models included, "
            "is refused until you add credits."
        )
        return PaymentRequired(
            f"Insufficient credits. {sentence}",
            metadata={"limit_source": "account", "explanation": _explanation("balance_negative", sentence)},
        )
    key_left = None if key is None else key.spendable_nanos
    if key is not None and key_left is not None and (key.limit_remaining_nanos or 0) <= 0:
        return key_limit_exceeded(key)
    budget = account.available_nanos if key_left is None else min(account.available_nanos, key_left)
    affordable = plan.price.affordable_completion_tokens(plan.prompt_tokens_estimate, max(budget, 0))
    if not plan.max_tokens_requested and affordable >= min_tokens:
        return LowerMaxTokens(max_tokens=min(affordable, plan.max_tokens))
    key_binds = key_left is not None and key_left < account.available_nanos
    needed = format_usd(plan.hold_nanos)
    if key_binds and key is not None:
        period = _period_name(key.limit_reset)
        sentence = (
            f"This request needs up to {needed} USD but this key's {period} cap leaves "
            f"{format_usd(max(key_left or 0, 0))} USD, enough for {affordable} output tokens."
        )
        return PaymentRequired(
            "This request requires more credits, or fewer max_tokens. You requested up to "
            f"{plan.max_tokens} tokens, but can only afford {affordable}. {sentence} "
            "Raise the key's limit or send a smaller max_tokens.",
            metadata={"limit_source": "key", "explanation": _explanation("key_cap_insufficient", sentence)},
        )
    if balance == 0 or (account.available_nanos <= 0 and account.held_nanos == 0):
        sentence = "Your balance is 0.00 USD: add credits to use paid models (free models stay available)."
        return PaymentRequired(
            f"Insufficient credits. {sentence}",
            metadata={"limit_source": "account", "explanation": _explanation("balance_empty", sentence)},
        )
    sentence = (
        f"This request needs up to {needed} USD ({plan.max_tokens} output tokens at most) but "
        f"{format_usd(max(account.available_nanos, 0))} USD of your {format_usd(balance)} USD balance is "
        f"available, enough for {affordable} output tokens."
    )
    return PaymentRequired(
        "This request requires more credits, or fewer max_tokens. You requested up to "
        f"{plan.max_tokens} tokens, but can only afford {affordable}. {sentence} Add credits or send a smaller "
        "max_tokens.",
        metadata={
            "limit_source": "account",
            "explanation": _explanation("insufficient_for_request", sentence),
        },
    )
