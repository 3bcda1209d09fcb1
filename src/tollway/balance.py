"""One answer to "do I have a balance, and why was I refused?", the same from the API, the CLI and the assistant.

Every figure comes from the same services the request path uses: the ledger's account and key
figures, the limiter's states, the refusal log and (when payments exist) pending payments. What money
allows is not re-derived here: the request path's own `decide_refusal` is asked about a default request
on the dearest paid model, so the codes /balance shows are the codes the next request can get, and
"nothing limits this key" is said only when no cap, balance or rate limit can refuse such a request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from tollway import explanations as explain
from tollway.accounts import MoneyView
from tollway.auth.records import KeyRecord
from tollway.clock import Clock, us_to_iso
from tollway.errors import TollwayError
from tollway.ledger.admission import CostPlan, LowerMaxTokens, decide_refusal, period_name
from tollway.ledger.book import AccountSnapshot, KeySnapshot
from tollway.ledger.pricing import Price
from tollway.limits.rules import DAY_US, LimitCheck, LimitState, next_midnight_us
from tollway.limits.service import RateLimiter, explanation_for
from tollway.money import format_usd, nanos_to_usd
from tollway.refusals import Refusal, RefusalLog
from tollway.routing.catalog import Catalog


@dataclass(frozen=True, slots=True)
class PendingPayment:
    id: str
    amount_nanos: int
    method: str
    created_at_us: int
    next_step: str

    def as_dict(self, now_us: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "amount": nanos_to_usd(self.amount_nanos),
            "method": self.method,
            "created_at": us_to_iso(self.created_at_us),
            "age_seconds": max(0, (now_us - self.created_at_us) // 1_000_000),
            "next_step": self.next_step,
        }


PendingSource = Callable[[str], Awaitable[list[PendingPayment]]]

# The prompt of the "default request" /balance asks the request path about: "nothing limits" needs a
# question of this size to fit whole; below that, what is lowered or refused is judged for the shortest
# prompt (one token), so a limit is named whenever any request can meet it.
DEFAULT_PROMPT_TOKENS = 256


# A key's coming expiry is explained this long before it.
_EXPIRY_NOTICE_US = 86_400 * 1_000_000


async def no_pending(_account_id: str) -> list[PendingPayment]:
    return []


class BalanceService:
    def __init__(
        self,
        money: MoneyView,
        limiter: RateLimiter,
        refusals: RefusalLog,
        catalog: Catalog,
        clock: Clock,
        pending: PendingSource = no_pending,
        *,
        min_affordable_tokens: int = 16,
        live_limits: bool = True,
    ) -> None:
        self._money = money
        self._limiter = limiter
        self._refusals = refusals
        self._catalog = catalog
        self._clock = clock
        self.pending = pending
        self._min_tokens = min_affordable_tokens
        # False where limit usage lives in another process (the CLI without Redis): then no rate limit
        # is ever reported as "not reached", since this process cannot know.
        self._live_limits = live_limits

    def _default_plan(self, prompt_tokens: int) -> tuple[str, CostPlan] | None:
        """A request that leaves max_tokens open, on the paid model whose such request holds the most."""
        plans = [
            (
                model.id,
                CostPlan(
                    price=Price.most_expensive([e.price for e in model.endpoints]),
                    prompt_tokens_estimate=prompt_tokens,
                    max_tokens=max(e.max_completion_tokens for e in model.endpoints),
                    max_tokens_requested=False,
                ),
            )
            for model in self._catalog.models()
            if not model.is_free
        ]
        if not plans:
            return None
        return max(plans, key=lambda item: item[1].hold_nanos)

    async def report(self, key: KeyRecord) -> dict[str, Any]:
        now_us = self._clock.now_us()
        account = await self._money.account_figures(key.account_id)
        key_figures = await self._money.key_figures(key)
        pending = await self.pending(key.account_id)
        free_checks = self._limiter.free_checks(key.account_id, account.purchased_nanos)
        configured = self._limiter.checks_for(
            key, free_model=False, purchased_nanos=account.purchased_nanos, prompt_tokens=0, endpoint=None
        )
        states = await self._limiter.view(free_checks + configured)
        free_states, limit_states = states[: len(free_checks)], states[len(free_checks) :]
        refusals = await self._refusals.recent(key.account_id)

        account_spendable = max(account.available_nanos, 0)
        key_spendable = key_figures.spendable_nanos
        spendable = account_spendable if key_spendable is None else max(0, min(account_spendable, key_spendable))

        explanations = self._explanations(key, account, key_figures, pending, free_states, limit_states, spendable)
        if not self._live_limits and (configured or free_checks):
            explanations += recent_rate_refusals(refusals, key, configured, now_us)
            explanations.append(explain.limits_not_visible([c.limit_id for c in free_checks + configured]))
        unlock = self._limiter.free_tier.unlock_purchased_nanos
        daily = free_states[1] if len(free_states) > 1 else None
        balance_text = format_usd(account.balance_nanos)
        if explanations:
            first = explanations[0].message
            summary = f"You have {balance_text} USD; {first[0].lower()}{first[1:]}"
        else:
            summary = f"You have {balance_text} USD and nothing limits this key."
        return {
            "balance": nanos_to_usd(account.balance_nanos),
            "total_credits": nanos_to_usd(account.credits_nanos),
            "total_usage": nanos_to_usd(account.usage_nanos),
            "held_in_flight": nanos_to_usd(account.held_nanos),
            "pending_payments": [p.as_dict(now_us) for p in pending],
            "key": {
                "name": key.name,
                "label": key.label,
                "limit": None if key.limit_nanos is None else nanos_to_usd(key.limit_nanos),
                "limit_reset": key.limit_reset.value if key.limit_reset else None,
                "limit_remaining": None
                if key_figures.limit_remaining_nanos is None
                else nanos_to_usd(key_figures.limit_remaining_nanos),
                "resets_at": us_to_iso(key_figures.resets_at_us),
                "disabled": key.disabled,
                "expires_at": us_to_iso(key.expires_at_us),
            },
            "spendable_now": nanos_to_usd(spendable),
            "free_models": {
                "limit_per_day": daily.check.limit if daily else None,
                "used_today": daily.used if daily else None,
                "resets_at": us_to_iso(next_midnight_us(now_us)),
                "unlock_at_purchased": None if account.purchased_nanos >= unlock else nanos_to_usd(unlock),
            },
            "rate_limits": [
                {
                    "limit": s.check.limit_id,
                    "limit_value": s.check.limit,
                    "used": s.used,
                    "remaining": s.remaining,
                    "reset_at": us_to_iso(s.reset_at_us),
                }
                for s in limit_states
            ],
            "last_refusals": [r.as_dict() for r in refusals],
            "summary": summary,
            "explanations": [e.as_dict() for e in explanations],
        }

    def _explanations(
        self,
        key: KeyRecord,
        account: AccountSnapshot,
        key_figures: KeySnapshot,
        pending: list[PendingPayment],
        free_states: list[LimitState],
        limit_states: list[LimitState],
        spendable: int,
    ) -> list[explain.Explanation]:
        found: list[explain.Explanation] = []
        balance_nanos = account.balance_nanos
        if key.disabled:
            found.append(explain.key_disabled())
        if key.expires_at_us is not None and key.expires_at_us - self._clock.now_us() <= _EXPIRY_NOTICE_US:
            found.append(explain.key_expires_soon(key.expires_at_us))
        if key.is_management:
            found.append(explain.management_key())
        if balance_nanos < 0:
            found.append(explain.balance_negative(balance_nanos))
        remaining = key_figures.limit_remaining_nanos
        if remaining is not None and remaining <= 0:
            found.append(
                explain.key_cap_exhausted(period_name(key.limit_reset), key.limit_nanos or 0, key_figures.resets_at_us)
            )
        if pending:
            # Ahead of an empty balance: "your payment is on its way" is the answer people are looking for.
            found.append(explain.payment_pending(len(pending), sum(p.amount_nanos for p in pending)))
        if balance_nanos == 0:
            found.append(explain.balance_empty())
        for state in free_states + limit_states:
            if state.remaining <= 0:
                found.append(explanation_for(state))
            elif state.check.limit_id.endswith("tokens-per-minute") and state.remaining < state.check.limit:
                # A request counts its prompt against this limit: one larger than what is left is refused.
                found.append(
                    explain.tokens_left(state.check.limit_id, state.check.limit, state.remaining, state.reset_at_us)
                )
        found += self._money_limits(account, key_figures, spendable)
        if remaining is not None and remaining > 0 and key.limit_nanos is not None:
            found.append(
                explain.key_cap(period_name(key.limit_reset), key.limit_nanos, remaining, key_figures.resets_at_us)
            )
        unique: dict[tuple[str, object], explain.Explanation] = {}
        for explanation in found:
            # One entry per code; rate limits one per limit id, since several can bind at once.
            limit_id = explanation.figures.get("limit") if explanation.code == "rate_limited" else None
            unique.setdefault((explanation.code, limit_id), explanation)
        return list(unique.values())

    def _money_limits(
        self, account: AccountSnapshot, key_figures: KeySnapshot, spendable: int
    ) -> list[explain.Explanation]:
        """What the request path does with a default request that does not fit: lower max_tokens or refuse."""
        default = self._default_plan(DEFAULT_PROMPT_TOKENS)
        shortest = self._default_plan(1)
        if default is None or shortest is None:
            return []
        model_id, plan = default
        if plan.hold_nanos <= spendable:
            return []
        if shortest[1].hold_nanos > spendable:
            model_id, plan = shortest
        decision = decide_refusal(plan, account, key_figures, self._min_tokens)
        if isinstance(decision, LowerMaxTokens):
            lowered = explain.max_tokens_lowered(spendable, decision.max_tokens, model_id)
            # The same request with max_tokens set above what is affordable is refused, not lowered.
            asked = decide_refusal(replace(plan, max_tokens_requested=True), account, key_figures, self._min_tokens)
            return [lowered] + ([_from_error(asked, plan, model_id)] if isinstance(asked, TollwayError) else [])
        return [_from_error(decision, plan, model_id)]


def _from_error(error: TollwayError, plan: CostPlan, model_id: str) -> explain.Explanation:
    """The explanation a refusal of `plan` carries, as an object again, naming the request it is about."""
    carried = dict(error.metadata.get("explanation") or {})
    code = str(carried.pop("code", error.error_type))
    message = str(carried.pop("message", error.message))
    if message.startswith("This request"):
        message = f"A request for {plan.max_tokens} output tokens on {model_id}" + message.removeprefix("This request")
    return explain.Explanation(code, message, carried)


_RATE_CODES = ("free_daily_cap", "free_per_minute", "rate_limited")
_MINUTE_US = 60_000_000


def recent_rate_refusals(
    refusals: list[Refusal], key: KeyRecord, configured: list[LimitCheck], now_us: int
) -> list[explain.Explanation]:
    """Where limit usage is not visible (the CLI without Redis), the 429s of the refusal log that may still hold:
    a free daily cap refused today, a per-minute one within the minute, a key's or account's limit within its
    longest period."""
    window_us = max([c.period_us for c in configured] + [_MINUTE_US])
    found: dict[str, explain.Explanation] = {}
    for refusal in refusals:
        if refusal.status != 429 or refusal.code not in _RATE_CODES or refusal.code in found:
            continue
        age_us = now_us - refusal.at_us
        if refusal.code == "free_daily_cap":
            current = refusal.at_us // DAY_US == now_us // DAY_US
        elif refusal.code == "free_per_minute":
            current = age_us < _MINUTE_US
        else:
            mine = refusal.key_id == key.id or "account-" in refusal.message
            current = bool(configured) and mine and age_us < window_us
        if current:
            found[refusal.code] = explain.Explanation(
                refusal.code,
                f"A request was refused {max(0, age_us) // 1_000_000} s ago with {refusal.status} {refusal.code} "
                f"({refusal.message}); that limit may still be reached.",
                {"refused_at": us_to_iso(refusal.at_us), "request_id": refusal.request_id},
            )
    return list(found.values())
