from __future__ import annotations

from tollway.auth.records import LimitReset
from tollway.errors import PaymentRequired, PermissionDenied
from tollway.ledger.admission import CostPlan, LowerMaxTokens, decide_refusal
from tollway.ledger.book import AccountSnapshot, KeySnapshot
from tollway.ledger.pricing import Price

PRICE = Price.parse("0.000001", "0.000002")


def account(credits: int, usage: int = 0, held: int = 0) -> AccountSnapshot:
    return AccountSnapshot(credits, usage, held, purchased_nanos=0, granted_nanos=credits)


def key(limit: int, used: int, reset: LimitReset | None = None, held: int = 0) -> KeySnapshot:
    return KeySnapshot(limit, reset, used, used, used, used, held)


def plan(max_tokens: int = 1024, requested: bool = False) -> CostPlan:
    return CostPlan(PRICE, prompt_tokens_estimate=10, max_tokens=max_tokens, max_tokens_requested=requested)


def test_open_max_tokens_is_lowered_to_the_affordable_amount() -> None:
    decision = decide_refusal(plan(), account(10_000 + 100 * 2000), None, min_tokens=16)
    assert decision == LowerMaxTokens(max_tokens=100)


def test_fewer_than_min_tokens_refuses_with_the_account_as_source() -> None:
    decision = decide_refusal(plan(), account(10_000 + 15 * 2000), None, min_tokens=16)
    assert isinstance(decision, PaymentRequired)
    assert decision.metadata["limit_source"] == "account"
    assert "can only afford 15" in decision.message


def test_negative_balance_is_refused_before_anything_else() -> None:
    decision = decide_refusal(plan(), account(100, usage=200), key(10**9, 0), min_tokens=16)
    assert isinstance(decision, PaymentRequired)
    assert decision.metadata["explanation"]["code"] == "balance_negative"


def test_used_up_key_cap_is_403_naming_its_window() -> None:
    decision = decide_refusal(plan(), account(10**10), key(1000, 1000, LimitReset.WEEKLY), min_tokens=16)
    assert isinstance(decision, PermissionDenied)
    assert decision.message.startswith("Key limit exceeded (weekly limit)")


def test_key_cap_below_the_request_is_a_402_from_the_key() -> None:
    decision = decide_refusal(plan(100, requested=True), account(10**10), key(100_000, 0), min_tokens=16)
    assert isinstance(decision, PaymentRequired)
    assert decision.metadata["limit_source"] == "key"
    assert decision.metadata["explanation"]["code"] == "key_cap_insufficient"


def test_empty_balance_says_so() -> None:
    decision = decide_refusal(plan(), account(0), None, min_tokens=16)
    assert isinstance(decision, PaymentRequired)
    assert decision.metadata["explanation"]["code"] == "balance_empty"
