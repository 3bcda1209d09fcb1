"""Model mode's check: every USD amount a model writes must be a fact's figure to the cent."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tollway.assistant.facts import FactSheet, usd
from tollway.assistant.model_mode import figures_agree, usd_amounts

nanos = st.integers(min_value=-(10**12), max_value=10**13)


def sheet_of(*balances_nanos: int) -> FactSheet:
    sheet = FactSheet()
    for amount in balances_nanos:
        sheet.add("account", {"balance": amount / 1e9, "limit_per_day": 50})
    return sheet


def test_amounts_in_the_ways_people_write_them() -> None:
    text = "You have $5, 5.00 USD, 1,234.50 dollars, USD 7.1 and -0.25 USD; 50 requests a day; 3 models."
    assert usd_amounts(text) == [Decimal("5"), Decimal("7.1"), Decimal("5.00"), Decimal("1234.50"), Decimal("0.25")]


def test_counts_that_are_not_money_are_not_checked() -> None:
    assert figures_agree("You used 50 of 50 free requests today.", sheet_of(5 * 10**9))
    assert not figures_agree("You have 50 USD.", sheet_of(5 * 10**9))  # 50 is a count in the facts, not USD


@given(nanos, st.sampled_from(["{} USD", "${}", "{} dollars", "USD {}"]))
def test_a_fact_figure_written_as_the_sentences_write_it_is_accepted(amount: int, form: str) -> None:
    text = "Your balance is " + form.format(usd(amount / 1e9)) + "."
    assert figures_agree(text, sheet_of(amount))


@given(nanos, nanos)
def test_a_figure_not_in_the_facts_is_rejected(fact: int, invented: int) -> None:
    if abs(Decimal(fact).scaleb(-9)).quantize(Decimal("0.01")) == abs(Decimal(invented).scaleb(-9)).quantize(
        Decimal("0.01")
    ):
        return
    assert not figures_agree(f"You have {usd(invented / 1e9)} USD.", sheet_of(fact))
