"""The payment-provider contracts: a new provider is one module implementing these calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from tollway.payments.model import Payment, ProviderEvent


class InvalidSignature(ValueError):
    """The webhook's signature is missing, wrong or too old; nothing in it can be trusted."""


class ProviderFailure(RuntimeError):
    """The provider refused or could not be reached (a charge, a refund, a checkout).

    `ambiguous` is true when the provider may have acted anyway (a timeout, a dropped connection,
    a 5xx): a charge then stays pending until the provider's webhook or a lookup says what happened.
    Only an unambiguous refusal (a declined card, an invalid request) is a failure.
    """

    def __init__(self, message: str, *, ambiguous: bool = False) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


class PaymentProvider(Protocol):
    name: str
    method: str
    refundable: bool

    async def create_checkout(self, payment: Payment) -> tuple[str, str]:
        """Start paying for an order; (the provider's id that binds it, the URL to send the payer to)."""
        ...

    def verify(self, raw_body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Check the signature on the raw body and normalise the event, or raise InvalidSignature."""
        ...

    async def refund(self, payment: Payment, cents: int) -> None: ...


@dataclass(frozen=True, slots=True)
class ChargeState:
    """What the provider says about an off-session charge: its id and succeeded, failed or pending."""

    charge_id: str
    state: str  # "succeeded", "failed" or "pending"
    reason: str | None = None


@runtime_checkable
class SavedCardProvider(Protocol):
    """A provider that can save a card and charge it off-session (auto-recharge)."""

    name: str

    async def setup_checkout(self, account_id: str, customer_id: str | None) -> tuple[str, str]: ...

    async def setup_payment_method(self, setup_id: str) -> str | None: ...

    async def charge_saved_method(self, payment: Payment, customer_id: str, payment_method_id: str) -> str:
        """Start the charge; the order's id is the idempotency key, so a retry never charges twice."""
        ...

    async def find_charge(self, payment: Payment, customer_id: str | None) -> ChargeState | None:
        """Ask the provider what became of the order's charge; None when it never reached the provider."""
        ...
