"""The payment-provider contract: a new provider is one module implementing these three calls."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from tollway.payments.model import Payment, ProviderEvent


class InvalidSignature(ValueError):
    """The webhook's signature is missing, wrong or too old; nothing in it can be trusted."""


class ProviderFailure(RuntimeError):
    """The provider refused or could not be reached (a charge, a refund, a checkout)."""


class PaymentProvider(Protocol):
    name: str
    method: str
    fee_percent: str
    fee_minimum_usd: str
    refundable: bool

    async def create_checkout(self, payment: Payment) -> tuple[str, str]:
        """Start paying for an order; (the provider's id that binds it, the URL to send the payer to)."""
        ...

    def verify(self, raw_body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Check the signature on the raw body and normalise the event, or raise InvalidSignature."""
        ...

    async def refund(self, payment: Payment, cents: int) -> None: ...
