"""Prices, holds and charges. Every charge is rounded up to nano-USD exactly once, in `charge_nanos`."""

from __future__ import annotations

from dataclasses import dataclass

from tollway.money import FEMTOS_PER_NANO, charge_nanos, price_to_femtos


@dataclass(frozen=True, slots=True)
class Price:
    """USD prices in femto-USD: per prompt token, per completion token, per request."""

    prompt_femtos: int
    completion_femtos: int
    request_femtos: int = 0

    @classmethod
    def parse(cls, prompt: str, completion: str, request: str = "0") -> Price:
        return cls(
            prompt_femtos=price_to_femtos(prompt, "pricing.prompt"),
            completion_femtos=price_to_femtos(completion, "pricing.completion"),
            request_femtos=price_to_femtos(request, "pricing.request"),
        )

    @property
    def is_free(self) -> bool:
        return self.prompt_femtos == 0 and self.completion_femtos == 0 and self.request_femtos == 0

    def cost_nanos(self, prompt_tokens: int, completion_tokens: int) -> int:
        """What a request costs; also the hold, given a prompt estimate and the most output it may produce."""
        total = prompt_tokens * self.prompt_femtos + completion_tokens * self.completion_femtos + self.request_femtos
        return charge_nanos(total)

    def affordable_completion_tokens(self, prompt_tokens: int, budget_nanos: int) -> int:
        """The most completion tokens whose cost, with the prompt, fits the budget (0 when none do)."""
        left_femtos = budget_nanos * FEMTOS_PER_NANO - prompt_tokens * self.prompt_femtos - self.request_femtos
        if left_femtos < 0:
            return 0
        if self.completion_femtos == 0:
            return 2**31 - 1
        return left_femtos // self.completion_femtos


FREE = Price(0, 0, 0)
