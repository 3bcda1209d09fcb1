"""The assistant: a question and the asker's account in, an answer built from live facts and the docs out.

Read-only by construction: it reads figures through the services the request path uses and never calls
anything that changes keys, limits or payments. It only ever reads the asker's own account.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tollway.assistant import facts as fact_builders
from tollway.assistant.answers import TOPICS, Options, grounded
from tollway.assistant.docs import DocIndex, Passage
from tollway.assistant.facts import FactSheet
from tollway.assistant.intents import GENERATION_ID, Intent, classify
from tollway.auth.records import KeyRecord, unlimited_key
from tollway.auth.store import AccountStore
from tollway.balance import BalanceService
from tollway.errors import InvalidRequest
from tollway.ledger.records import GenerationRecord
from tollway.money import nanos_to_usd, usd_to_nanos
from tollway.payments.auto_recharge import AutoRechargeStore
from tollway.payments.store import PaymentStore
from tollway.routing.catalog import Catalog
from tollway.settings import Settings

log = logging.getLogger("tollway.assistant")

_ROLES = ("user", "assistant")
_MODEL_MENTION = re.compile(r"[a-z0-9_\-.]+/[a-z0-9_\-.:]+", re.IGNORECASE)
_MAX_LISTED_MODELS = 12


@dataclass(frozen=True, slots=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Asker:
    account_id: str
    key: KeyRecord | None = None  # None: the account as a whole (dashboard, Discord, an operator)


@dataclass(slots=True)
class Answer:
    answer: str
    sheet: FactSheet
    sources: list[Passage]
    intent: Intent
    mode: str = "grounded"
    model: str | None = None
    generation_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "facts": self.sheet.as_list(),
            "sources": [{"title": p.title, "path": p.path} for p in self.sources],
            "mode": self.mode,
            "model": self.model,
            "generation_id": self.generation_id,
            "intent": self.intent.value,
        }


class AnswerWriter(Protocol):
    """Model mode: rewrites a grounded answer with a model; returns the answer unchanged when it must not."""

    async def write(self, asker: Asker, question: list[Turn], answer: Answer) -> Answer: ...


@dataclass
class AccountSources:
    """Where the facts come from: the same stores and services the request path and the API use."""

    balance: BalanceService
    accounts: AccountStore
    payments: PaymentStore
    auto_recharge: AutoRechargeStore
    catalog: Catalog
    generation: Callable[[str], Awaitable[GenerationRecord | None]]
    key_figures: Callable[[KeyRecord], Awaitable[Any]]


def parse_turns(body: Any, max_chars: int, max_messages: int) -> list[Turn]:
    """`messages` as sent: user and assistant turns of text, the last one the user's question."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object with a messages array")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            'messages is required: [{"role": "user", "content": "do I have a balance?"}]',
            metadata={"field": "messages"},
        )
    if len(messages) > max_messages:
        raise InvalidRequest(f"At most {max_messages} messages per question", metadata={"field": "messages"})
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise InvalidRequest(
                f"messages[{index}] must be an object with role user or assistant", metadata={"field": "messages"}
            )
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise InvalidRequest(f"messages[{index}].content must be non-empty text", metadata={"field": "messages"})
        if len(content) > max_chars:
            if message["role"] == "assistant":  # an earlier answer sent back: only its start matters
                content = content[:max_chars]
            else:
                raise InvalidRequest(
                    f"messages[{index}].content is longer than {max_chars} characters; ask a shorter question",
                    metadata={"field": "messages", "limit_chars": max_chars},
                )
        if "\x00" in content:
            raise InvalidRequest(f"messages[{index}].content contains a NUL character", metadata={"field": "messages"})
        turns.append(Turn(message["role"], content))
    if turns[-1].role != "user":
        raise InvalidRequest("The last message must be the user's question", metadata={"field": "messages"})
    return turns


def _synthetic_key(account_id: str) -> KeyRecord:
    """The account seen without any key (an account that has none yet): no cap, no key limits."""
    return unlimited_key(account_id, key_id=f"account:{account_id}", key_hash="", name="(no key)", label="", revision=0)


Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


@dataclass
class AssistantService:
    sources: AccountSources
    settings: Settings
    docs: DocIndex
    writer: AnswerWriter | None = None
    payment_methods: tuple[str, ...] = field(default_factory=tuple)
    embed: Embed | None = None  # the configured embedding model, when there is one
    _preparing: asyncio.Task[None] | None = field(default=None, init=False)

    def start(self) -> None:
        """Embed the passages in the background; until that is done (or if it fails), ranking is lexical."""
        if self.embed is not None and self._preparing is None:
            self._preparing = asyncio.create_task(self._embed_passages(), name="assistant-docs")

    async def stop(self) -> None:
        if self._preparing is not None:
            self._preparing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._preparing

    async def _embed_passages(self) -> None:
        assert self.embed is not None
        texts = [f"{p.title}\n{p.text}" for p in self.docs.passages]
        try:
            vectors = await self.embed(texts)
        except Exception as exc:  # any failure of the model leaves the lexical ranking, which always works
            log.warning("could not embed the documentation", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            return
        if len(vectors) == len(texts):
            self.docs.semantic = vectors

    async def _question_vector(self, question: str) -> list[float] | None:
        if self.embed is None or self.docs.semantic is None:
            return None
        try:
            return (await self.embed([question]))[0]
        except Exception as exc:  # as above: the answer goes out with lexical sources
            log.warning("could not embed a question", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
            return None

    @property
    def options(self) -> Options:
        return Options(self.payment_methods, self.settings.refund_window_hours)

    async def answer(self, asker: Asker, turns: list[Turn], model_timeout_s: float | None = None) -> Answer:
        account = await self.sources.accounts.account(asker.account_id)
        email = account.email if account else None
        question = turns[-1].content
        intent = classify(question, email, asker.account_id)
        if intent is Intent.UNKNOWN:
            earlier = " ".join(t.content for t in turns if t.role == "user")
            intent = classify(earlier, email, asker.account_id)
        sheet = FactSheet()
        if intent is not Intent.OTHER_ACCOUNT:
            await self._gather(sheet, asker, intent, question)
        sources = self.docs.search(
            f"{question} {TOPICS.get(intent, '')}", limit=3, query_embedding=await self._question_vector(question)
        )
        text = grounded(intent, sheet, self.options)
        if sources:
            text += "\n\nSee: " + "; ".join(f"{p.title} ({p.path})" for p in sources)
        result = Answer(text, sheet, sources, intent)
        if self.writer is not None and intent is not Intent.OTHER_ACCOUNT:
            try:
                result = await asyncio.wait_for(self.writer.write(asker, turns, result), model_timeout_s)
            except TimeoutError:  # the grounded answer goes out in time (Discord waits 3 s at most)
                log.warning("assistant model answer too slow; answering grounded")
                result = Answer(text, sheet, sources, intent)
        return result

    async def _gather(self, sheet: FactSheet, asker: Asker, intent: Intent, question: str) -> None:
        account_id = asker.account_id
        key = asker.key
        keys = [k for k in await self.sources.accounts.keys_for_account(account_id) if k.deleted_at_us is None]
        if key is None:
            usable = [k for k in keys if not k.is_management]
            key = next((k for k in usable if not k.disabled), None) or next(iter(usable), None)
            key = key or _synthetic_key(account_id)
        report = await self.sources.balance.report(key)
        fact_builders.from_report(sheet, report, with_key=not key.id.startswith("account:"))
        if asker.key is None:
            for other in keys:
                if other.id != key.id and not other.is_management:
                    figures = await self.sources.key_figures(other)
                    remaining = figures.limit_remaining_nanos
                    sheet.add(
                        "key",
                        {
                            "name": other.name,
                            "limit": None if other.limit_nanos is None else nanos_to_usd(other.limit_nanos),
                            "limit_remaining": None if remaining is None else nanos_to_usd(remaining),
                            "limit_reset": other.limit_reset.value if other.limit_reset else None,
                            "resets_at": None,
                            "disabled": other.disabled,
                        },
                    )
        fact_builders.from_purchases(sheet, await self.sources.payments.for_account(account_id))
        self._checkout_fact(sheet)
        auto = await self.sources.auto_recharge.get(account_id)
        sheet.add(
            "auto_recharge",
            {
                "enabled": auto.enabled,
                "threshold": nanos_to_usd(auto.threshold_nanos),
                "amount": nanos_to_usd(auto.amount_nanos),
            },
        )
        found = GENERATION_ID.search(question)
        if found:
            generation = await self.sources.generation(found.group(0))
            if generation is not None and generation.account_id == account_id:
                fact_builders.from_generation(sheet, generation)
            else:  # unknown and someone else's look the same: nothing about other accounts leaks
                sheet.add("generation_missing", {"id": found.group(0)})
        if intent is Intent.MODELS:
            self._model_facts(sheet, question)

    def _checkout_fact(self, sheet: FactSheet) -> None:
        s = self.settings
        sheet.add(
            "checkout",
            {
                "methods": list(self.payment_methods),
                "min_amount": nanos_to_usd(usd_to_nanos(s.checkout_min_usd)),
                "max_amount": nanos_to_usd(usd_to_nanos(s.checkout_max_usd)),
                "card_fee_percent": s.card_fee_percent,
                "card_fee_min": nanos_to_usd(usd_to_nanos(s.card_fee_min_usd)),
                "crypto_fee_percent": s.crypto_fee_percent,
                "refund_window_hours": s.refund_window_hours,
            },
        )

    def _model_facts(self, sheet: FactSheet, question: str) -> None:
        catalog = self.sources.catalog
        mentioned = [catalog.resolve(m) for m in _MODEL_MENTION.findall(question)]
        models = [m for m in mentioned if m is not None] or catalog.models()[:_MAX_LISTED_MODELS]
        for model in models:
            fact_builders.from_model(sheet, model)
