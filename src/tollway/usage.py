"""One usage record for every provider: each kind of token counted once, whatever the upstream reported.

Providers report usage in different shapes (OpenAI counts cached tokens inside `prompt_tokens`,
Anthropic outside `input_tokens`, Gemini puts thinking beside the answer). Adapters translate
into `Usage`, and `Usage.normalised` makes the totals cover their parts, so that pricing can split
a total into kinds without counting a token twice or dropping one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Usage:
    prompt_tokens: int  # every input token: cached reads and cache writes included
    completion_tokens: int  # every output token: reasoning included
    reasoning_tokens: int = 0
    cached_tokens: int = 0  # input read from the provider's prompt cache
    cache_write_tokens: int = 0  # input written to the cache (5-minute and 1-hour writes together)
    cache_write_1h_tokens: int = 0  # the part of cache_write_tokens written for one hour
    images: int = 0  # input images
    web_searches: int = 0
    # True when the upstream gave no usage and Tollway estimated the tokens itself.
    counted_locally: bool = False

    def normalised(self) -> Usage:
        """Parts never exceed their totals: a total is raised to cover its parts (no token is dropped)."""
        write_1h = count(self.cache_write_1h_tokens)
        write = max(count(self.cache_write_tokens), write_1h)
        cached = count(self.cached_tokens)
        reasoning = count(self.reasoning_tokens)
        return Usage(
            prompt_tokens=max(count(self.prompt_tokens), cached + write),
            completion_tokens=max(count(self.completion_tokens), reasoning),
            reasoning_tokens=reasoning,
            cached_tokens=cached,
            cache_write_tokens=write,
            cache_write_1h_tokens=write_1h,
            images=count(self.images),
            web_searches=count(self.web_searches),
            counted_locally=self.counted_locally,
        )


# A count above this is not a usage report but a broken upstream; it is clamped so that a cost
# stays far inside a 64-bit column (10^12 tokens at the dearest price is still a finite bill).
MAX_COUNT = 10**12


def count(value: Any) -> int:
    """A token count from an upstream's JSON: integers (or integral floats), never negative, else 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        return 0
    return min(value, MAX_COUNT)


def field_count(container: Any, *path: str) -> int:
    """`count` of a nested field, 0 when any level is missing or not an object."""
    value = container
    for name in path:
        if not isinstance(value, dict):
            return 0
        value = value.get(name)
    return count(value)


BYTES_PER_TOKEN = 3


def estimate_bytes_tokens(data: bytes) -> int:
    """Tokens of text or JSON when no tokenizer is at hand: UTF-8 bytes / 3, rounded up.

    No tokenizer in use yields fewer than one token per three bytes (non-Latin scripts included),
    so an estimate by this rule is an upper bound: safe for holds and for bills without usage.
    """
    return -(-len(data) // BYTES_PER_TOKEN)


def estimate_text_tokens(text: str) -> int:
    return estimate_bytes_tokens(text.encode("utf-8", "surrogatepass"))
