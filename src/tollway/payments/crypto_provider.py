"""Crypto payments, Coinbase Commerce-style: a hosted charge, then signed webhooks.

`charge:created` and `charge:pending` show the order as pending (the transaction is seen but not
confirmed); only `charge:confirmed` credits; `charge:failed` fails it. Crypto is never refunded.
The signature is X-CC-Webhook-Signature: HMAC-SHA256 of the raw body with the shared secret.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
import orjson

from tollway.payments.model import EventKind, Payment, ProviderEvent
from tollway.payments.provider import InvalidSignature, ProviderFailure

_KINDS = {
    "charge:created": EventKind.PROCESSING,
    "charge:pending": EventKind.PROCESSING,
    "charge:confirmed": EventKind.PAID,
    "charge:failed": EventKind.FAILED,
}


class CryptoProvider:
    name = "crypto"
    method = "crypto"
    refundable = False

    def __init__(self, api_key: str, webhook_secret: str, api_base: str, session: aiohttp.ClientSession) -> None:
        self._api_key = api_key
        self._secret = webhook_secret.encode()
        self._base = api_base.rstrip("/")
        self._session = session

    async def create_checkout(self, payment: Payment) -> tuple[str, str]:
        body = {
            "name": "Tollway credits",
            "pricing_type": "fixed_price",
            "local_price": {"amount": f"{payment.total_cents / 100:.2f}", "currency": "USD"},
            "metadata": {"payment_id": payment.id, "account_id": payment.account_id},
        }
        headers = {"X-CC-Api-Key": self._api_key, "X-CC-Version": "2018-03-22", "Content-Type": "application/json"}
        try:
            async with self._session.post(
                f"{self._base}/charges",
                data=orjson.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                payload = await response.json(loads=orjson.loads, content_type=None)
                if response.status >= 400:
                    raise ProviderFailure(f"the crypto provider refused: {payload}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderFailure(f"the crypto provider is unreachable: {exc}") from exc
        charge = payload["data"]
        return str(charge["id"]), str(charge["hosted_url"])

    async def refund(self, payment: Payment, cents: int) -> None:
        raise ProviderFailure("crypto payments are not refundable")

    def verify(self, raw_body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        signature = headers.get("X-CC-Webhook-Signature", "")
        expected = hmac.new(self._secret, raw_body, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(signature, expected):
            raise InvalidSignature("missing or wrong X-CC-Webhook-Signature")
        try:
            event = orjson.loads(raw_body)["event"]
            charge: dict[str, Any] = event["data"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidSignature(f"the body is not a charge event: {exc}") from exc
        metadata = charge.get("metadata") or {}
        local = ((charge.get("pricing") or {}).get("local")) or {}
        cents = None
        try:
            if local.get("amount") is not None:
                cents = int(Decimal(str(local["amount"])) * 100)
        except InvalidOperation:
            cents = -1
        return ProviderEvent(
            provider=self.name,
            event_id=str(event.get("id")),
            raw_type=str(event.get("type")),
            kind=_KINDS.get(str(event.get("type")), EventKind.IGNORED),
            payment_id=metadata.get("payment_id"),
            account_id=metadata.get("account_id"),
            external_id=charge.get("id"),
            amount_cents=cents,
            currency=local.get("currency"),
        )
