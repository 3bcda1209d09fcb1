"""Fake Stripe and crypto (Coinbase Commerce-style) APIs: real HTTP servers on loopback, calls counted.

Tests sign webhook events themselves with each provider's real scheme (see `stripe_signature`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


def stripe_signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def crypto_signature(payload: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


@dataclass
class PaymentBehaviour:
    decline_payment_intents: bool = False
    session_delay_s: float = 0.0
    # How the next `intent_failures` PaymentIntent creations end, the charge having been made or not:
    # "500_after_charge", "drop_after_charge" (connection closed, no answer), "500_before_charge".
    intent_failure: str | None = None
    intent_failures: int = 0
    # Hold PaymentIntent creations this long after the charge is made (a process can be killed meanwhile).
    intent_delay_s: float = 0.0
    # Answer lookups (retrieve, list) with 503 while true.
    lookups_unavailable: bool = False


@dataclass
class FakePayments:
    """One server with both APIs: /v1/... (Stripe) and /crypto/charges."""

    behaviour: PaymentBehaviour = field(default_factory=PaymentBehaviour)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_intents: list[dict[str, Any]] = field(default_factory=list)
    intent_lookups: int = 0
    refunds: list[dict[str, Any]] = field(default_factory=list)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = 0

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def stripe_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def crypto_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/crypto"

    def next_session_id(self) -> str:
        return f"cs_test_{self._peek}"

    def start(self) -> FakePayments:
        self._peek = 1
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._session)
        app.router.add_post("/v1/payment_intents", self._intent)
        app.router.add_get("/v1/payment_intents", self._list_intents)
        app.router.add_get("/v1/payment_intents/{id}", self._retrieve_intent)
        app.router.add_post("/v1/refunds", self._refund)
        app.router.add_get("/v1/setup_intents/{id}", self._setup_intent)
        app.router.add_post("/crypto/charges", self._charge)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    def _id(self, prefix: str) -> str:
        number = next(self._ids)
        self._peek = number + 1
        return f"{prefix}_test_{number}"

    @staticmethod
    def _json(payload: dict[str, Any], status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")

    async def _session(self, request: web.Request) -> web.Response:
        form = await request.post()
        session_id = self._id("cs")
        if self.behaviour.session_delay_s:
            await asyncio.sleep(self.behaviour.session_delay_s)
        metadata = {k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")}
        mode = str(form.get("mode"))
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"{self.stripe_base}/pay/{session_id}",
            "mode": mode,
            "amount_total": int(str(form.get("line_items[0][price_data][unit_amount]", 0)))
            if mode == "payment"
            else None,
            "currency": str(form.get("line_items[0][price_data][currency]", form.get("currency", "usd"))),
            "payment_status": "unpaid",
            "client_reference_id": form.get("client_reference_id"),
            "metadata": metadata,
        }
        self.sessions[session_id] = session
        return self._json(session)

    def _take_failure(self) -> str | None:
        if self.behaviour.intent_failure and self.behaviour.intent_failures > 0:
            self.behaviour.intent_failures -= 1
            return self.behaviour.intent_failure
        return None

    @staticmethod
    def _server_error() -> web.Response:
        return FakePayments._json({"error": {"type": "api_error", "message": "An unknown error occurred"}}, 500)

    async def _intent(self, request: web.Request) -> web.Response:
        form = await request.post()
        key = request.headers.get("Idempotency-Key")
        failure = self._take_failure()
        if failure == "500_before_charge":
            return self._server_error()
        # Like Stripe, a retry with the same idempotency key gets the first charge, never a second one.
        previous = next((i for i in self.payment_intents if key and i["idempotency_key"] == key), None)
        if previous is not None and failure is None:
            return self._json(previous)
        declined = self.behaviour.decline_payment_intents
        intent = {
            "id": self._id("pi"),
            "object": "payment_intent",
            "amount": int(str(form["amount"])),
            "currency": str(form["currency"]),
            "customer": form.get("customer"),
            "payment_method": form.get("payment_method"),
            "idempotency_key": request.headers.get("Idempotency-Key"),
            "metadata": {k[len("metadata[") : -1]: v for k, v in form.items() if k.startswith("metadata[")},
            "status": "requires_payment_method" if declined else "succeeded",
            "last_payment_error": {"message": "Your card was declined."} if declined else None,
        }
        self.payment_intents.append(intent)
        if self.behaviour.intent_delay_s:
            await asyncio.sleep(self.behaviour.intent_delay_s)
        if failure == "500_after_charge":
            return self._server_error()
        if failure == "drop_after_charge":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if declined:
            return self._json(
                {"error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}},
                status=402,
            )
        return self._json(intent)

    async def _retrieve_intent(self, request: web.Request) -> web.Response:
        self.intent_lookups += 1
        if self.behaviour.lookups_unavailable:
            return self._server_error()
        found = next((i for i in self.payment_intents if i["id"] == request.match_info["id"]), None)
        if found is None:
            return self._json({"error": {"type": "invalid_request_error", "message": "No such payment_intent"}}, 404)
        return self._json(found)

    async def _list_intents(self, request: web.Request) -> web.Response:
        self.intent_lookups += 1
        if self.behaviour.lookups_unavailable:
            return self._server_error()
        customer = request.query.get("customer")
        found = [i for i in reversed(self.payment_intents) if customer is None or i["customer"] == customer]
        return self._json({"object": "list", "data": found[:100], "has_more": False, "url": "/v1/payment_intents"})

    async def _refund(self, request: web.Request) -> web.Response:
        form = await request.post()
        refund = {
            "id": self._id("re"),
            "object": "refund",
            "amount": int(str(form["amount"])),
            "payment_intent": form.get("payment_intent"),
            "status": "succeeded",
        }
        self.refunds.append(refund)
        return self._json(refund)

    async def _setup_intent(self, request: web.Request) -> web.Response:
        return self._json({"id": request.match_info["id"], "object": "setup_intent", "payment_method": "pm_test_saved"})

    async def _charge(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        charge_id = self._id("charge")
        charge = {
            "id": charge_id,
            "code": charge_id.upper(),
            "hosted_url": f"{self.crypto_base}/pay/{charge_id}",
            "metadata": body.get("metadata", {}),
            "pricing": {"local": body["local_price"]},
            "api_key": request.headers.get("X-CC-Api-Key"),
        }
        self.charges[charge_id] = charge
        return self._json({"data": charge}, status=201)
