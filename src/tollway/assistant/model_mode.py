"""Model mode: a catalog model writes the answer from the facts, through Tollway's own routing and billing.

The model sees the facts (JSON) and the passages and is told to quote figures only from them. Its answer is
checked: every USD amount in it must equal a USD figure of the facts to the cent, else the grounded answer
is kept and `assistant_rejected_answers_total` counts the rejection. Any failure of the model (refusal,
upstream error, empty answer) also keeps the grounded answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from tollway.assistant.facts import FactSheet
from tollway.assistant.service import Answer, Asker, Turn
from tollway.auth.records import KeyRecord
from tollway.errors import TollwayError
from tollway.gateway.chat import ChatGateway
from tollway.gateway.validation import parse_chat_body
from tollway.metrics import Metrics

log = logging.getLogger("tollway.assistant")

_NUMBER = r"(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)"
_USD_AMOUNTS = (
    re.compile(r"(?:\$|US\$|USD)\s?" + _NUMBER, re.IGNORECASE),
    re.compile(_NUMBER + r"\s?(?:USD|US dollars?|dollars?|\$)", re.IGNORECASE),
)
_MAX_ANSWER_TOKENS = 600
_SYSTEM = (
    "You are the support assistant of an LLM API gateway. Answer the user's question about their own account "
    "in a few plain sentences. Use only the facts and documentation below; quote USD amounts exactly as the "
    "facts give them and never compute or invent a figure. Name the fact's code when you explain a refusal. "
    "You cannot change anything: point to where the user can act."
)


def usd_amounts(text: str) -> list[Decimal]:
    """Every USD amount written in `text` ("$5", "5.00 USD", "5 dollars"), as absolute values."""
    found = []
    for pattern in _USD_AMOUNTS:
        for match in pattern.finditer(text):
            try:
                found.append(abs(Decimal(match.group(1).replace(",", ""))))
            except InvalidOperation:
                continue
    return found


def figures_agree(text: str, sheet: FactSheet) -> bool:
    allowed = sheet.usd_figures()
    return all(amount.quantize(Decimal("0.01")) in allowed for amount in usd_amounts(text))


@dataclass
class ModelWriter:
    gateway: ChatGateway
    model: str
    billing: str  # "house" | "asker"
    house_key: Callable[[], Awaitable[KeyRecord | None]]
    metrics: Metrics
    fallback_limit: int = 3

    async def _billed_key(self, asker: Asker) -> KeyRecord | None:
        if self.billing == "asker" and asker.key is not None and not asker.key.is_management:
            return asker.key
        return await self.house_key()

    def _messages(self, turns: list[Turn], answer: Answer) -> list[dict[str, Any]]:
        context = {
            "facts": answer.sheet.as_list(),
            "documentation": [{"title": p.title, "path": p.path, "text": p.text} for p in answer.sources],
            "grounded_answer": answer.answer,
        }
        return [
            {"role": "system", "content": _SYSTEM + "\n\n" + orjson.dumps(context).decode()},
            *({"role": t.role, "content": t.content} for t in turns),
        ]

    async def write(self, asker: Asker, question: list[Turn], answer: Answer) -> Answer:
        key = await self._billed_key(asker)
        if key is None:
            log.warning("assistant model mode has no key to bill; answering grounded")
            return answer
        body = parse_chat_body(
            {"model": self.model, "max_tokens": _MAX_ANSWER_TOKENS, "messages": self._messages(question, answer)},
            self.fallback_limit,
        )
        try:
            context = await self.gateway.admit(key, body)
            completion = await self.gateway.complete(context)
        except TollwayError as exc:
            log.warning("assistant model call failed; answering grounded", extra={"error": exc.message[:300]})
            return answer
        content = completion["choices"][0]["message"].get("content")
        generation_id = str(completion.get("id") or context.generation_id)
        if not isinstance(content, str) or not content.strip():
            return answer
        if not figures_agree(content, answer.sheet):
            self.metrics.assistant_rejected_answers.inc()
            log.warning("assistant model answer quoted a figure not in the facts; answering grounded")
            answer.model = self.model
            answer.generation_id = generation_id
            return answer
        answer.answer = content.strip()
        answer.mode = "model"
        answer.model = self.model
        answer.generation_id = generation_id
        return answer
