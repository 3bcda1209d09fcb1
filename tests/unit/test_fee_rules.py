"""Fees from the documented settings: max(minimum, amount × percent) rounded half-up to the cent, on top."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tollway.payments.model import FeeRule, fee_rules
from tollway.settings import Settings

USD = 1_000_000_000


def test_default_settings_give_the_documented_fees() -> None:
    rules = fee_rules(Settings())
    assert rules["stripe"].fee_nanos(10 * USD) == 800_000_000  # the 0.80 USD minimum
    assert rules["stripe"].fee_nanos(100 * USD) == 5_500_000_000  # 5.5 %
    assert rules["crypto"].fee_nanos(10 * USD) == 500_000_000  # 5 %, no minimum


def test_configured_settings_are_the_ones_used() -> None:
    rules = fee_rules(Settings(card_fee_percent="2.9", card_fee_min_usd="0.30", crypto_fee_percent="0"))
    assert rules["stripe"].fee_nanos(5 * USD) == 300_000_000
    assert rules["stripe"].fee_nanos(33_33 * USD // 100) == 970_000_000  # 33.33 × 2.9 % = 0.96657 → 0.97
    assert rules["crypto"].fee_nanos(1000 * USD) == 0


@pytest.mark.parametrize(
    ("percent", "minimum"), [("five", "0"), ("-1", "0"), ("NaN", "0"), ("Infinity", "0"), ("1", "-0.5"), ("1", "x")]
)
def test_a_fee_that_is_not_a_non_negative_decimal_is_refused_with_its_name(percent: str, minimum: str) -> None:
    with pytest.raises(ValueError, match="card_fee"):
        FeeRule.from_settings(percent, minimum, "card_fee_percent, card_fee_min_usd")


def test_half_a_cent_rounds_up() -> None:
    assert FeeRule(Decimal("5"), 0).fee_nanos(10_100_000_000 + 100_000_000) == 510_000_000  # 10.20 × 5 % = 0.51
    assert FeeRule(Decimal("5"), 0).fee_nanos(10_100_000_000) == 510_000_000  # 10.10 × 5 % = 0.505 → 0.51
