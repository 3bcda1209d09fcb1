"""What a refused reservation means, in plain words: pure decisions, no I/O.

After a hold does not fit, this decides whether to lower `max_tokens` (the client set none, and at
least `min_tokens` are affordable) or which refusal applies: negative balance, empty or
insufficient balance (402, account), or a key cap used up (403) or too small for this request (402, key).
"""

from __future__ import annotations

from dataclasses import dataclass

from tollway import explanations as explain
from tollway.auth.records import LimitReset
from tollway.errors import PaymentRequired, PermissionDenied, TollwayError
from tollway.ledger.book import AccountSnapshot, KeySnapshot
from tollway.ledger.pricing import Price


@dataclass(frozen=True, slots=True)
class CostPlan:
    price: Price
    prompt_tokens_estimate: int
    max_tokens: int
    max_tokens_requested: bool
    images: int = 0
    reasoning_tokens: int = 0  # the thinking budget, output allowed on top of max_tokens
    web_searches: int = 0

    @property
    def hold_nanos(self) -> int:
        """The most the request can cost: every input token at its dearest rate, all output at the dearer
        of answer and thinking, images and searches at their prices, and the request fee."""
        return self.price.worst_case_nanos(
            self.prompt_tokens_estimate, self.max_tokens + self.reasoning_tokens, self.images, self.web_searches
        )

    def affordable_tokens(self, budget_nanos: int) -> int:
        """The largest max_tokens whose hold fits the budget (0 when none does)."""
        output = self.price.affordable_completion_tokens(
            self.prompt_tokens_estimate, budget_nanos, self.images, self.web_searches
        )
        return max(output - self.reasoning_tokens, 0)


@dataclass(frozen=True, slots=True)
class LowerMaxTokens:
    max_tokens: int


def period_name(reset: LimitReset | None) -> str:
    return {None: "total", LimitReset.DAILY: "daily", LimitReset.WEEKLY: "weekly", LimitReset.MONTHLY: "monthly"}[reset]


def _meta(source: str, explanation: explain.Explanation) -> dict[str, object]:
    return {"limit_source": source, "explanation": explanation.as_dict()}


def key_limit_exceeded(key: KeySnapshot) -> PermissionDenied:
    period = period_name(key.limit_reset)
    explanation = explain.key_cap_exhausted(period, key.limit_nanos or 0, key.resets_at_us)
    return PermissionDenied(
        f"Key limit exceeded ({period} limit). {explanation.message}", metadata=_meta("key", explanation)
    )


def decide_refusal(
    plan: CostPlan, account: AccountSnapshot, key: KeySnapshot | None, min_tokens: int
) -> LowerMaxTokens | TollwayError:
    """Given figures under which `plan.hold_nanos` did not fit, say what to do instead."""
    balance = account.balance_nanos
    if balance < 0:
        explanation = explain.balance_negative(balance)
        return PaymentRequired(f"Insufficient credits. {explanation.message}", metadata=_meta("account", explanation))
    key_left = None if key is None else key.spendable_nanos
    if key is not None and key_left is not None and (key.limit_remaining_nanos or 0) <= 0:
        return key_limit_exceeded(key)
    budget = account.available_nanos if key_left is None else min(account.available_nanos, key_left)
    affordable = plan.affordable_tokens(max(budget, 0))
    if not plan.max_tokens_requested and affordable >= min_tokens:
        return LowerMaxTokens(max_tokens=min(affordable, plan.max_tokens))
    key_binds = key_left is not None and key_left < account.available_nanos
    lead = (
        "This request requires more credits, or fewer max_tokens. You requested up to "
        f"{plan.max_tokens} tokens, but can only afford {affordable}."
    )
    if key_binds and key is not None and key_left is not None:
        explanation = explain.key_cap_insufficient(period_name(key.limit_reset), plan.hold_nanos, key_left, affordable)
        return PaymentRequired(
            f"{lead} {explanation.message} Raise the key's limit or send a smaller max_tokens.",
            metadata=_meta("key", explanation),
        )
    if balance == 0:
        explanation = explain.balance_empty()
        return PaymentRequired(f"Insufficient credits. {explanation.message}", metadata=_meta("account", explanation))
    explanation = explain.insufficient_for_request(
        plan.hold_nanos, account.available_nanos, balance, plan.max_tokens, affordable
    )
    return PaymentRequired(
        f"{lead} {explanation.message} Add credits or send a smaller max_tokens.",
        metadata=_meta("account", explanation),
    )
