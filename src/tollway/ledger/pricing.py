"""Prices, holds and charges. Every charge is rounded up to nano-USD exactly once, in `charge_nanos`.

A price has one rate per kind of usage. Kinds a configuration leaves out take the rate that bills
them as plain tokens: cache reads and writes the prompt rate, one-hour writes the cache-write rate,
reasoning the completion rate; images and web searches cost nothing unless priced. So a missing
discount never gives money away, and `/models` shows the rates that are really charged.
"""

from __future__ import annotations

from dataclasses import dataclass

from tollway.money import FEMTOS_PER_NANO, charge_nanos, price_to_femtos
from tollway.usage import Usage

# How the cost kinds split between the prompt and the completion side of `cost_details`.
INPUT_KINDS = ("prompt", "input_cache_read", "input_cache_write", "image")
OUTPUT_KINDS = ("completion", "internal_reasoning")


@dataclass(frozen=True, slots=True)
class Price:
    """USD prices in femto-USD: per token of each kind, per input image, per web search, per request."""

    prompt_femtos: int
    completion_femtos: int
    request_femtos: int = 0
    cache_read_femtos: int | None = None
    cache_write_femtos: int | None = None
    cache_write_1h_femtos: int | None = None
    reasoning_femtos: int | None = None
    image_femtos: int = 0
    web_search_femtos: int = 0

    def __post_init__(self) -> None:
        # Resolve the defaults once, so every reader sees plain integers.
        if self.cache_read_femtos is None:
            object.__setattr__(self, "cache_read_femtos", self.prompt_femtos)
        if self.cache_write_femtos is None:
            object.__setattr__(self, "cache_write_femtos", self.prompt_femtos)
        if self.cache_write_1h_femtos is None:
            object.__setattr__(self, "cache_write_1h_femtos", self.cache_write_femtos)
        if self.reasoning_femtos is None:
            object.__setattr__(self, "reasoning_femtos", self.completion_femtos)

    @classmethod
    def parse(
        cls,
        prompt: str,
        completion: str,
        request: str = "0",
        *,
        input_cache_read: str | None = None,
        input_cache_write: str | None = None,
        input_cache_write_1h: str | None = None,
        internal_reasoning: str | None = None,
        image: str = "0",
        web_search: str = "0",
    ) -> Price:
        def optional(value: str | None, what: str) -> int | None:
            return None if value is None else price_to_femtos(value, f"pricing.{what}")

        return cls(
            prompt_femtos=price_to_femtos(prompt, "pricing.prompt"),
            completion_femtos=price_to_femtos(completion, "pricing.completion"),
            request_femtos=price_to_femtos(request, "pricing.request"),
            cache_read_femtos=optional(input_cache_read, "input_cache_read"),
            cache_write_femtos=optional(input_cache_write, "input_cache_write"),
            cache_write_1h_femtos=optional(input_cache_write_1h, "input_cache_write_1h"),
            reasoning_femtos=optional(internal_reasoning, "internal_reasoning"),
            image_femtos=price_to_femtos(image, "pricing.image"),
            web_search_femtos=price_to_femtos(web_search, "pricing.web_search"),
        )

    def rates(self) -> dict[str, int]:
        """Every kind's rate in femto-USD, keyed by OpenRouter's `pricing` field names."""
        return {
            "prompt": self.prompt_femtos,
            "completion": self.completion_femtos,
            "request": self.request_femtos,
            "image": self.image_femtos,
            "web_search": self.web_search_femtos,
            "internal_reasoning": self.reasoning,
            "input_cache_read": self.cache_read,
            "input_cache_write": self.cache_write,
            "input_cache_write_1h": self.cache_write_1h,
        }

    @classmethod
    def most_expensive(cls, prices: list[Price]) -> Price:
        """Each kind at the highest rate any of `prices` charges, so no failover can overspend a hold."""
        if len(prices) == 1:
            return prices[0]
        rates = [p.rates() for p in prices]

        def top(kind: str) -> int:
            return max(r[kind] for r in rates)

        return cls(
            prompt_femtos=top("prompt"),
            completion_femtos=top("completion"),
            request_femtos=top("request"),
            cache_read_femtos=top("input_cache_read"),
            cache_write_femtos=top("input_cache_write"),
            cache_write_1h_femtos=top("input_cache_write_1h"),
            reasoning_femtos=top("internal_reasoning"),
            image_femtos=top("image"),
            web_search_femtos=top("web_search"),
        )

    # Resolved rates (never None after __post_init__), typed for readers.
    @property
    def cache_read(self) -> int:
        return self.cache_read_femtos or 0

    @property
    def cache_write(self) -> int:
        return self.cache_write_femtos or 0

    @property
    def cache_write_1h(self) -> int:
        return self.cache_write_1h_femtos or 0

    @property
    def reasoning(self) -> int:
        return self.reasoning_femtos or 0

    @property
    def is_free(self) -> bool:
        return all(rate == 0 for rate in self.rates().values())

    @property
    def dearest_input_femtos(self) -> int:
        """The highest rate an input token can cost: plain, cached, or written to the cache."""
        return max(self.prompt_femtos, self.cache_read, self.cache_write, self.cache_write_1h)

    @property
    def dearest_output_femtos(self) -> int:
        return max(self.completion_femtos, self.reasoning)

    def breakdown(self, usage: Usage) -> CostBreakdown:
        """What a served request costs, kind by kind (the formula of the README's "Pricing")."""
        u = usage.normalised()
        write_5m = u.cache_write_tokens - u.cache_write_1h_tokens
        plain_prompt = u.prompt_tokens - u.cached_tokens - u.cache_write_tokens
        return CostBreakdown(
            prompt_femtos=plain_prompt * self.prompt_femtos,
            cache_read_femtos=u.cached_tokens * self.cache_read,
            cache_write_femtos=write_5m * self.cache_write + u.cache_write_1h_tokens * self.cache_write_1h,
            completion_femtos=(u.completion_tokens - u.reasoning_tokens) * self.completion_femtos,
            reasoning_femtos=u.reasoning_tokens * self.reasoning,
            image_femtos=u.images * self.image_femtos,
            web_search_femtos=u.web_searches * self.web_search_femtos,
            request_femtos=self.request_femtos,
            # What the cache saved (negative when writes cost more than plain prompt tokens would have).
            cache_discount_femtos=u.cached_tokens * (self.prompt_femtos - self.cache_read)
            + write_5m * (self.prompt_femtos - self.cache_write)
            + u.cache_write_1h_tokens * (self.prompt_femtos - self.cache_write_1h),
        )

    def cost_nanos(self, prompt_tokens: int, completion_tokens: int) -> int:
        """What plain prompt and completion tokens cost with the request fee (no cache, reasoning or images)."""
        total = prompt_tokens * self.prompt_femtos + completion_tokens * self.completion_femtos + self.request_femtos
        return charge_nanos(total)

    def worst_case_nanos(self, prompt_tokens: int, completion_tokens: int, images: int = 0, searches: int = 0) -> int:
        """The most a request of this size can cost whichever way its tokens are billed: the hold."""
        total = (
            prompt_tokens * self.dearest_input_femtos
            + completion_tokens * self.dearest_output_femtos
            + images * self.image_femtos
            + searches * self.web_search_femtos
            + self.request_femtos
        )
        return charge_nanos(total)

    def affordable_completion_tokens(
        self, prompt_tokens: int, budget_nanos: int, images: int = 0, searches: int = 0
    ) -> int:
        """The most completion tokens whose worst-case cost, with the prompt, fits the budget (0 when none do)."""
        fixed = self.worst_case_nanos(prompt_tokens, 0, images, searches)
        left_femtos = (budget_nanos - fixed) * FEMTOS_PER_NANO
        if left_femtos < 0:
            return 0
        if self.dearest_output_femtos == 0:
            return 2**31 - 1
        return left_femtos // self.dearest_output_femtos


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """A request's cost by kind, in femto-USD; the bill is their sum rounded up once."""

    prompt_femtos: int
    cache_read_femtos: int
    cache_write_femtos: int
    completion_femtos: int
    reasoning_femtos: int
    image_femtos: int
    web_search_femtos: int
    request_femtos: int
    cache_discount_femtos: int

    @property
    def total_femtos(self) -> int:
        return (
            self.prompt_femtos
            + self.cache_read_femtos
            + self.cache_write_femtos
            + self.completion_femtos
            + self.reasoning_femtos
            + self.image_femtos
            + self.web_search_femtos
            + self.request_femtos
        )

    @property
    def total_nanos(self) -> int:
        return charge_nanos(self.total_femtos)

    def as_femtos(self) -> dict[str, int]:
        """Each kind in femto-USD under OpenRouter's pricing names, with the cache discount (kept on generations)."""
        return {
            "prompt": self.prompt_femtos,
            "input_cache_read": self.cache_read_femtos,
            "input_cache_write": self.cache_write_femtos,
            "completion": self.completion_femtos,
            "internal_reasoning": self.reasoning_femtos,
            "image": self.image_femtos,
            "web_search": self.web_search_femtos,
            "request": self.request_femtos,
            "cache_discount": self.cache_discount_femtos,
        }


FREE = Price(0, 0, 0)
