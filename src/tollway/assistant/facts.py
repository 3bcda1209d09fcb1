"""The facts an answer may state: the asker's live figures, each with a stable code, from the request path's services.

A fact's figures are what the API reports (USD as JSON numbers); `usd_figures` lists every USD amount a
model-written answer may quote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tollway.clock import us_to_iso
from tollway.ledger.records import GenerationRecord
from tollway.money import format_usd, nanos_to_usd
from tollway.payments.model import Payment
from tollway.routing.catalog import CatalogModel

# Figures that are amounts of USD (the rest are counts, times and names).
USD_FIGURES = frozenset(
    {
        "balance",
        "total_credits",
        "total_usage",
        "held_in_flight",
        "spendable_now",
        "limit",
        "limit_remaining",
        "amount",
        "pending_amount",
        "needed",
        "available",
        "cost",
        "unlock_at_purchased",
        "refunded",
        "prompt_per_million",
        "completion_per_million",
        "threshold",
        "min_amount",
        "max_amount",
        "card_fee_min",
    }
)


@dataclass(frozen=True, slots=True)
class Fact:
    code: str
    figures: dict[str, Any]
    message: str = ""  # the explanation's own sentence, for codes that have one

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "figures": self.figures}


def usd(value: Any) -> str:
    """A USD figure from a report as the sentences write it (2 to 9 decimals, exact)."""
    return format_usd(round(Decimal(str(value)) * 1_000_000_000))


@dataclass(slots=True)
class FactSheet:
    facts: list[Fact] = field(default_factory=list)

    def add(self, code: str, figures: dict[str, Any], message: str = "") -> None:
        self.facts.append(Fact(code, figures, message))

    def first(self, code: str) -> Fact | None:
        return next((f for f in self.facts if f.code == code), None)

    def all(self, code: str) -> list[Fact]:
        return [f for f in self.facts if f.code == code]

    @property
    def limits(self) -> list[Fact]:
        """The explanations of what limits the key, in /balance's order (summary first)."""
        return [f for f in self.facts if f.message]

    def usd_figures(self) -> set[Decimal]:
        """Every USD amount the facts hold, to the cent (absolute: "-0.50" and "0.50" both refer to it)."""
        found: set[Decimal] = set()
        for fact in self.facts:
            for name, value in fact.figures.items():
                if name in USD_FIGURES and isinstance(value, (int, float)) and not isinstance(value, bool):
                    found.add(abs(Decimal(str(value))).quantize(Decimal("0.01")))
        return found

    def as_list(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self.facts]


def from_report(sheet: FactSheet, report: dict[str, Any], *, with_key: bool) -> None:
    """The balance report (GET /api/v1/balance's data) as facts."""
    sheet.add(
        "account",
        {name: report[name] for name in ("balance", "total_credits", "total_usage", "held_in_flight", "spendable_now")},
    )
    if with_key:
        key = report["key"]
        sheet.add(
            "key",
            {
                "name": key["name"],
                "limit": key["limit"],
                "limit_remaining": key["limit_remaining"],
                "limit_reset": key["limit_reset"],
                "resets_at": key["resets_at"],
                "disabled": key["disabled"],
            },
        )
    for explanation in report["explanations"]:
        figures = {k: v for k, v in explanation.items() if k not in ("code", "message")}
        sheet.add(explanation["code"], figures, explanation["message"])
    for pending in report["pending_payments"]:
        sheet.add("pending_payment", dict(pending))
    sheet.add("free_models", dict(report["free_models"]))
    for limit in report["rate_limits"]:
        sheet.add("rate_limit", dict(limit))
    for last in report["last_refusals"][:3]:  # newest first
        sheet.add(
            "last_refusal",
            {"status": last["status"], "reason": last["reason"], "at": last["at"], "request_id": last["request_id"]},
        )


def from_purchases(sheet: FactSheet, purchases: list[Payment], limit: int = 5) -> None:
    for payment in purchases[:limit]:
        sheet.add(
            "purchase",
            {
                "id": payment.id,
                "amount": nanos_to_usd(payment.amount_nanos),
                "status": payment.status.value,
                "method": payment.method,
                "refunded": payment.refunded_cents / 100,
                "created_at": us_to_iso(payment.created_at_us),
            },
        )


def from_generation(sheet: FactSheet, generation: GenerationRecord) -> None:
    sheet.add(
        "generation",
        {
            "id": generation.id,
            "model": generation.model,
            "cost": nanos_to_usd(generation.cost_nanos),
            "tokens_prompt": generation.tokens_prompt,
            "tokens_completion": generation.tokens_completion,
            "created_at": us_to_iso(generation.created_at_us),
        },
    )


def from_model(sheet: FactSheet, model: CatalogModel) -> None:
    price = model.cheapest.price
    sheet.add(
        "model_price",
        {
            "model": model.id,
            "free": model.is_free,
            # USD per million tokens (femto-USD per token = nano-USD per million tokens).
            "prompt_per_million": nanos_to_usd(price.prompt_femtos),
            "completion_per_million": nanos_to_usd(price.completion_femtos),
        },
    )
