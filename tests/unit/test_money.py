from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollway.money import (
    MoneyFormatError,
    charge_nanos,
    femtos_to_price_string,
    format_usd,
    nanos_to_usd,
    price_to_femtos,
    round_half_up_cents,
    usd_to_nanos,
)


def test_usd_strings_and_floats_convert_exactly() -> None:
    assert usd_to_nanos("10") == 10_000_000_000
    assert usd_to_nanos(0.1) == 100_000_000
    assert usd_to_nanos("0.000000001") == 1


@pytest.mark.parametrize("bad", ["abc", "1e400", "0.0000000001", "NaN", "inf", True])
def test_bad_amounts_are_refused(bad: object) -> None:
    with pytest.raises(MoneyFormatError):
        usd_to_nanos(bad)  # type: ignore[arg-type]


def test_prices_keep_sub_nano_precision_and_render_as_openrouter_strings() -> None:
    assert price_to_femtos("0.0000000375") == 37_500_000
    assert femtos_to_price_string(37_500_000) == "0.0000000375"
    assert femtos_to_price_string(0) == "0"
    assert femtos_to_price_string(price_to_femtos("0.000002")) == "0.000002"


def test_charges_round_up_once() -> None:
    assert charge_nanos(0) == 0
    assert charge_nanos(1) == 1
    assert charge_nanos(1_000_000) == 1
    assert charge_nanos(1_000_001) == 2


@given(st.integers(min_value=-(10**15) + 1, max_value=10**15 - 1))
def test_json_floats_give_back_the_exact_nanos_below_a_million_usd(nanos: int) -> None:
    # A double keeps 15 significant digits, so any figure under 1,000,000 USD reads back exactly.
    assert Decimal(repr(nanos_to_usd(nanos))) * 1_000_000_000 == nanos


def test_format_usd_shows_as_many_decimals_as_needed() -> None:
    assert format_usd(5_000_000_000) == "5.00"
    assert format_usd(1_234_500_000) == "1.2345"
    assert format_usd(-12_000) == "-0.000012"


def test_fees_round_half_up_to_cents() -> None:
    assert round_half_up_cents(275_000_000) == 280_000_000  # 0.275 -> 0.28
    assert round_half_up_cents(274_999_999) == 270_000_000
