"""Payment records, normalised provider events and the fee rule."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tollway.clock import us_to_iso
from tollway.money import NANOS_PER_USD, nanos_to_usd, usd_to_nanos

if TYPE_CHECKING:
    from tollway.settings import Settings

NANOS_PER_CENT = NANOS_PER_USD // 100


class PaymentStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class EventKind(StrEnum):
    """What a provider event means for an order, whatever the provider called it."""

    PAID = "paid"
    PROCESSING = "processing"
    FAILED = "failed"
    REFUNDED = "refunded"
    DISPUTE_OPENED = "dispute_opened"
    DISPUTE_WON = "dispute_won"
    SETUP_COMPLETED = "setup_completed"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class FeeRule:
    percent: Decimal
    minimum_nanos: int

    @classmethod
    def zero(cls) -> FeeRule:
        return cls(Decimal(0), 0)

    @classmethod
    def from_settings(cls, percent: str, minimum_usd: str, names: str) -> FeeRule:
        """The rule from its two settings; a value that is not a non-negative decimal stops start-up, named."""
        try:
            parsed = Decimal(percent)
            minimum_nanos = usd_to_nanos(minimum_usd, names)
        except (InvalidOperation, ValueError) as exc:
            raise ValueError(f"{names}: not decimal numbers ({percent!r}, {minimum_usd!r}); e.g. 5.5, 0.80") from exc
        if not parsed.is_finite() or parsed < 0 or minimum_nanos < 0:
            raise ValueError(f"{names} must be zero or more, got {percent!r} and {minimum_usd!r}")
        return cls(parsed, minimum_nanos)

    def fee_nanos(self, amount_nanos: int) -> int:
        """max(minimum, amount × percent rounded half-up to cents): the fee is added on top."""
        cents = (Decimal(amount_nanos) / NANOS_PER_CENT * self.percent / 100).quantize(Decimal(1), ROUND_HALF_UP)
        return max(self.minimum_nanos, int(cents) * NANOS_PER_CENT)


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    account_id: str
    provider: str
    method: str
    external_id: str | None
    payment_intent: str | None
    amount_nanos: int
    fee_nanos: int
    total_cents: int
    currency: str
    status: PaymentStatus
    refunded_cents: int
    disputed: bool
    note: str | None
    checkout_url: str | None
    created_at_us: int
    updated_at_us: int
    credited_at_us: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "amount": nanos_to_usd(self.amount_nanos),
            "fee": nanos_to_usd(self.fee_nanos),
            "total": self.total_cents / 100,
            "method": self.method,
            "provider": self.provider,
            "refunded": self.refunded_cents / 100,
            "disputed": self.disputed,
            "note": self.note,
            "created_at": us_to_iso(self.created_at_us),
            "updated_at": us_to_iso(self.updated_at_us),
        }


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A verified provider event, reduced to what binding and crediting need."""

    provider: str
    event_id: str
    raw_type: str
    kind: EventKind
    payment_id: str | None = None
    external_id: str | None = None
    account_id: str | None = None
    amount_cents: int | None = None
    currency: str | None = None
    payment_intent: str | None = None
    refunded_cents: int | None = None
    dispute_id: str | None = None
    customer_id: str | None = None
    payment_method_id: str | None = None


def fee_rules(settings: Settings) -> dict[str, FeeRule]:
    """The fee of each provider, from card_fee_percent, card_fee_min_usd and crypto_fee_percent."""
    return {
        "stripe": FeeRule.from_settings(
            settings.card_fee_percent, settings.card_fee_min_usd, "card_fee_percent, card_fee_min_usd"
        ),
        "crypto": FeeRule.from_settings(settings.crypto_fee_percent, "0", "crypto_fee_percent"),
    }
