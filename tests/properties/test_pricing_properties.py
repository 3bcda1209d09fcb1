"""Pricing properties: for any usage and any prices, the bill is the formula, no token is counted twice
or dropped, and the hold for a request of that size is never below its bill."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from hypothesis import given
from hypothesis import strategies as st

from tollway.ledger.pricing import Price
from tollway.usage import Usage

counts = st.integers(min_value=0, max_value=10**7)
rates = st.integers(min_value=0, max_value=10**11)  # femto-USD per unit: up to 100 USD per million tokens
optional_rates = st.none() | rates


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    return Usage(
        prompt_tokens=draw(counts),
        completion_tokens=draw(counts),
        reasoning_tokens=draw(counts),
        cached_tokens=draw(counts),
        cache_write_tokens=draw(counts),
        cache_write_1h_tokens=draw(counts),
        images=draw(st.integers(0, 50)),
        web_searches=draw(st.integers(0, 20)),
    )


@st.composite
def prices(draw: st.DrawFn) -> Price:
    return Price(
        prompt_femtos=draw(rates),
        completion_femtos=draw(rates),
        request_femtos=draw(rates),
        cache_read_femtos=draw(optional_rates),
        cache_write_femtos=draw(optional_rates),
        cache_write_1h_femtos=draw(optional_rates),
        reasoning_femtos=draw(optional_rates),
        image_femtos=draw(rates),
        web_search_femtos=draw(rates),
    )


def formula_nanos(usage: Usage, price: Price) -> int:
    """The README's formula, written out again independently, in Decimal USD."""
    femto = Decimal(10) ** -15
    prompt = max(usage.prompt_tokens, usage.cached_tokens + max(usage.cache_write_tokens, usage.cache_write_1h_tokens))
    write_total = max(usage.cache_write_tokens, usage.cache_write_1h_tokens)
    completion = max(usage.completion_tokens, usage.reasoning_tokens)
    cache_read = price.prompt_femtos if price.cache_read_femtos is None else price.cache_read_femtos
    usd = (
        (prompt - usage.cached_tokens - write_total) * price.prompt_femtos
        + usage.cached_tokens * cache_read
        + (write_total - usage.cache_write_1h_tokens) * price.cache_write
        + usage.cache_write_1h_tokens * price.cache_write_1h
        + (completion - usage.reasoning_tokens) * price.completion_femtos
        + usage.reasoning_tokens * price.reasoning
        + usage.images * price.image_femtos
        + usage.web_searches * price.web_search_femtos
        + price.request_femtos
    ) * femto
    return int((usd * 10**9).to_integral_value(rounding=ROUND_CEILING))


@given(usages(), prices())
def test_cost_is_the_formula(usage: Usage, price: Price) -> None:
    assert price.breakdown(usage).total_nanos == formula_nanos(usage, price)


@given(usages())
def test_every_token_is_counted_once(usage: Usage) -> None:
    normal = usage.normalised()
    prompt_parts = (
        (normal.prompt_tokens - normal.cached_tokens - normal.cache_write_tokens)
        + normal.cached_tokens
        + (normal.cache_write_tokens - normal.cache_write_1h_tokens)
        + normal.cache_write_1h_tokens
    )
    completion_parts = (normal.completion_tokens - normal.reasoning_tokens) + normal.reasoning_tokens
    assert prompt_parts == normal.prompt_tokens
    assert completion_parts == normal.completion_tokens
    # No part is negative, no reported token is dropped, and normalising twice changes nothing.
    assert normal.prompt_tokens - normal.cached_tokens - normal.cache_write_tokens >= 0
    assert normal.prompt_tokens >= usage.prompt_tokens
    assert normal.completion_tokens >= usage.completion_tokens
    assert normal.normalised() == normal


@given(usages(), prices())
def test_a_hold_for_the_same_size_bounds_the_bill(usage: Usage, price: Price) -> None:
    normal = usage.normalised()
    hold = price.worst_case_nanos(normal.prompt_tokens, normal.completion_tokens, normal.images, normal.web_searches)
    assert hold >= price.breakdown(usage).total_nanos


@given(counts, counts, prices())
def test_plain_tokens_cost_what_they_did_before(prompt: int, completion: int, price: Price) -> None:
    plain = Usage(prompt_tokens=prompt, completion_tokens=completion)
    assert price.breakdown(plain).total_nanos == price.cost_nanos(prompt, completion)


@given(st.lists(prices(), min_size=1, max_size=4), usages())
def test_the_dearest_price_of_candidates_bounds_each_of_them(candidates: list[Price], usage: Usage) -> None:
    dearest = Price.most_expensive(candidates)
    for price in candidates:
        assert dearest.breakdown(usage).total_nanos >= price.breakdown(usage).total_nanos
