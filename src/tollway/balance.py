"""One answer to "do I have a balance, and why was I refused?", the same from the API and the CLI.

Every figure comes from the same services the request path uses: the ledger's account and key
figures, the limiter's states, the refusal log and (when payments exist) pending payments.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tollway import explanations as explain
from tollway.accounts import MoneyView
from tollway.auth.records import KeyRecord
from tollway.clock import Clock, us_to_iso
from tollway.ledger.admission import period_name
from tollway.limits.rules import LimitState, next_midnight_us
from tollway.limits.service import RateLimiter, explanation_for
from tollway.money import format_usd, nanos_to_usd
from tollway.refusals import RefusalLog
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
    ) -> None:
        self._money = money
        self._limiter = limiter
        self._refusals = refusals
        self._catalog = catalog
        self._clock = clock
        self.pending = pending

    def _cheapest_paid(self) -> tuple[str, int, int] | None:
        """(model id, completion femtos per token, max completion tokens) of the cheapest paid model."""
        paid = [m for m in self._catalog.models() if m.cheapest.price.completion_femtos > 0]
        if not paid:
            return None
        model = min(paid, key=lambda m: m.cheapest.price.completion_femtos + m.cheapest.price.prompt_femtos)
        return model.id, model.cheapest.price.completion_femtos, model.max_completion_tokens

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

        explanations = self._explanations(
            key, account.balance_nanos, key_figures, pending, free_states, limit_states, spendable
        )
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
        balance_nanos: int,
        key_figures: Any,
        pending: list[PendingPayment],
        free_states: list[LimitState],
        limit_states: list[LimitState],
        spendable: int,
    ) -> list[explain.Explanation]:
        found: list[explain.Explanation] = []
        if key.disabled:
            found.append(explain.key_disabled())
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
        cheapest = self._cheapest_paid()
        if cheapest is not None and spendable > 0 and not found:
            model_id, completion_femtos, max_tokens = cheapest
            affordable = spendable * 1_000_000 // max(completion_femtos, 1)
            if affordable < max_tokens:
                found.append(explain.max_tokens_lowered(spendable, int(affordable), model_id))
        return found
