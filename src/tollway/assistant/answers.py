"""Grounded answers: one template per intent, filled only with figures from the fact sheet.

Every answer but a refusal to discuss another account ends with the account's status: the balance, what
this key can spend now and each code that limits it, in /balance's words, so the figures a user needs are
there whatever the question.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tollway.assistant.facts import Fact, FactSheet, usd
from tollway.assistant.intents import Intent

_MONEY_REFUSALS = (
    "balance_negative",
    "balance_empty",
    "insufficient_for_request",
    "key_cap_insufficient",
    "max_tokens_lowered",
)
_RATE_REFUSALS = ("free_daily_cap", "free_per_minute", "rate_limited")


@dataclass(frozen=True, slots=True)
class Options:
    """What the gateway offers, from its settings (so the answer names only what exists)."""

    payment_methods: tuple[str, ...]  # "stripe", "crypto"
    refund_window_hours: float


# Words added to the question when looking for passages, per intent.
TOPICS: dict[Intent, str] = {
    Intent.BALANCE: "balance explained spendable_now summary credits",
    Intent.PENDING_PURCHASE: "payments pending checkout webhook credited",
    Intent.KEY_CAP: "key cap limit limit_reset balance explained",
    Intent.FREE_MODELS: "free models rate limits per day",
    Intent.REFUSAL_402: "refusals 402 insufficient credits balance_empty",
    Intent.REFUSAL_403: "refusals 403 key limit exceeded key_cap_exhausted",
    Intent.REFUSAL_429: "rate limits 429 free models",
    Intent.KEY_DISABLED: "disabled key 401 keys enable",
    Intent.BUY_CREDITS: "payments checkout buy credits card",
    Intent.CRYPTO: "payments crypto checkout",
    Intent.AUTO_RECHARGE: "auto-recharge payments threshold",
    Intent.REFUNDS: "refund payments negative balance",
    Intent.GENERATION_COST: "generation cost tokens",
    Intent.MODELS: "models pricing",
    Intent.API_ENDPOINTS: "API reference balance credits key",
    Intent.CHANGE_REQUEST: "keys limit dashboard",
    Intent.UNKNOWN: "balance explained",
}


def status(sheet: FactSheet) -> str:
    """The account's figures and every code that limits this key (or "nothing limits this key")."""
    account = sheet.first("account")
    if account is None:
        return ""
    f = account.figures
    text = (
        f"Your account now: balance {usd(f['balance'])} USD (credits {usd(f['total_credits'])} USD, used "
        f"{usd(f['total_usage'])} USD, held by requests in flight {usd(f['held_in_flight'])} USD); "
        f"spendable now: {usd(f['spendable_now'])} USD."
    )
    limits = sheet.limits
    if not limits:
        return text + " Nothing limits this key."
    return text + "".join(f"\n- [{fact.code}] {fact.message}" for fact in limits)


def _codes(sheet: FactSheet, codes: tuple[str, ...]) -> list[Fact]:
    return [fact for fact in sheet.limits if fact.code in codes]


def _balance(sheet: FactSheet, _options: Options) -> str:
    account = sheet.first("account")
    assert account is not None
    balance = account.figures["balance"]
    spendable = account.figures["spendable_now"]
    if balance < 0:
        lead = f"No: your balance is negative, {usd(balance)} USD, so every request is refused until you add credits."
    elif balance == 0:
        lead = "No: your balance is 0.00 USD. Paid models are refused until you add credits; free models still work."
    else:
        lead = f"Yes: you have {usd(balance)} USD, and this key can spend {usd(spendable)} USD of it now."
    pending = sheet.all("pending_payment")
    if pending:
        amount = sum(p.figures["amount"] for p in pending)
        lead += f" A payment of {usd(amount)} USD is pending: it is credited as soon as the provider confirms it."
    key = sheet.first("key")
    if key is not None and key.figures["limit"] is not None:
        lead += (
            f' A key\'s "limit remaining" ({usd(key.figures["limit_remaining"])} USD here) is its spending cap, '
            "not your credits."
        )
    return lead


def _pending(sheet: FactSheet, _options: Options) -> str:
    pending = sheet.all("pending_payment")
    if pending:
        lines = [
            f"Your payment of {usd(p.figures['amount'])} USD ({p.figures['method']}, started "
            f"{p.figures['age_seconds']} s ago) is pending: {p.figures['next_step']}. It is added to your balance "
            "as soon as the payment provider confirms it; nothing is lost while it waits."
            for p in pending
        ]
        return "\n".join(lines)
    purchases = sheet.all("purchase")
    if not purchases:
        return (
            "I see no payment on this account, pending or completed. If you paid, check that you used this "
            "account (the key's account), or buy credits on the dashboard's Credits page."
        )
    last = purchases[0].figures
    meaning = {
        "succeeded": "it was credited and is part of your balance",
        "refunded": "it was refunded, so its credits were taken back",
        "partially_refunded": "part of it was refunded and taken back from your balance",
        "failed": "the payment failed, so nothing was credited",
        "expired": "the checkout expired unpaid, so nothing was credited",
    }.get(last["status"], f"its status is {last['status']}")
    return f"Your last purchase, {usd(last['amount'])} USD by {last['method']}, is {last['status']}: {meaning}."


def _key_cap(sheet: FactSheet, _options: Options) -> str:
    account = sheet.first("account")
    assert account is not None
    text = (
        f"Your credits ({usd(account.figures['balance'])} USD) belong to the account and every key spends them. "
        "A key's limit is a spending cap on that key alone: it never adds money, and adding credits does not "
        "lift it. A request may spend the smaller of the two."
    )
    for key in sheet.all("key"):
        f = key.figures
        if f["limit"] is None:
            text += f" Key {f['name']}: no cap."
        else:
            period = f["limit_reset"] or "total"
            text += f" Key {f['name']}: {period} cap {usd(f['limit'])} USD, {usd(f['limit_remaining'])} USD left" + (
                f" until {f['resets_at']}." if f["resets_at"] else "."
            )
    return text


def _free(sheet: FactSheet, _options: Options) -> str:
    free = sheet.first("free_models")
    assert free is not None
    f = free.figures
    text = (
        f"Free models (ids ending in :free) allow {f['limit_per_day']} requests a day per account; you have used "
        f"{f['used_today']} today, and the count resets at 00:00 UTC ({f['resets_at']})."
    )
    if f["unlock_at_purchased"] is not None:
        text += f" Purchasing at least {usd(f['unlock_at_purchased'])} USD of credits in total raises the daily cap."
    if sheet.first("balance_negative"):
        text += " A negative balance refuses free models too (402 balance_negative)."
    return text


def _refusal(codes: tuple[str, ...], meaning: str) -> Callable[[FactSheet, Options], str]:
    def answer(sheet: FactSheet, _options: Options) -> str:
        present = _codes(sheet, codes)
        text = meaning
        if present:
            text += " For this key now: " + " ".join(f"[{fact.code}] {fact.message}" for fact in present)
        else:
            text += " None of these applies to this key right now."
        last = sheet.first("last_refusal")
        if last is not None:
            text += (
                f" Your last refusal was a {last.figures['status']} {last.figures['reason']} at {last.figures['at']}."
            )
        return text

    return answer


def _key_disabled(sheet: FactSheet, _options: Options) -> str:
    text = (
        "A disabled key is refused with 401 key_disabled, and an expired one with 401 key_expired, before "
        "anything else is checked. Enable it on the dashboard's Keys page or with PATCH /api/v1/keys/{hash} "
        '{"disabled": false} and a management key, or use another key.'
    )
    disabled = [k.figures["name"] for k in sheet.all("key") if k.figures.get("disabled")]
    if disabled:
        text += " Disabled keys of this account: " + ", ".join(disabled) + "."
    else:
        text += " No key of this account that I can see is disabled."
    return text


def _buy(sheet: FactSheet, options: Options) -> str:
    checkout = sheet.first("checkout")
    if checkout is None or not options.payment_methods:
        return "Payments are not configured on this gateway: ask its operator to add credits to your account."
    f = checkout.figures
    text = (
        f"Buy credits on the dashboard's Credits page (/credits) or with POST /api/v1/credits/checkout and a "
        f"management key: from {usd(f['min_amount'])} to {usd(f['max_amount'])} USD."
    )
    if "stripe" in options.payment_methods:
        text += f" Cards pay a {f['card_fee_percent']} % fee (at least {usd(f['card_fee_min'])} USD) on top."
    return text + " Credits appear as soon as the payment provider confirms the payment."


def _crypto(sheet: FactSheet, options: Options) -> str:
    if "crypto" not in options.payment_methods:
        return "Crypto payments are not enabled on this gateway. " + _buy(sheet, options)
    checkout = sheet.first("checkout")
    fee = checkout.figures["crypto_fee_percent"] if checkout else "?"
    return (
        'Pay with crypto through POST /api/v1/credits/checkout with "provider": "crypto" and a management key '
        f"(a {fee} % fee). The credits arrive once the charge is confirmed on-chain, which can take a few minutes; "
        "crypto payments cannot be refunded."
    )


def _auto(sheet: FactSheet, _options: Options) -> str:
    auto = sheet.first("auto_recharge")
    if auto is None or not auto.figures["enabled"]:
        return (
            "Auto-recharge is off for this account. Turn it on from the dashboard's Credits page (a saved card is "
            "needed) or PUT /api/v1/credits/auto-recharge: when the balance falls below a threshold, an amount is "
            "charged to the card."
        )
    f = auto.figures
    return (
        f"Auto-recharge is on: when the balance falls below {usd(f['threshold'])} USD, "
        f"{usd(f['amount'])} USD are added."
    )


def _refunds(sheet: FactSheet, options: Options) -> str:
    text = (
        f"Card purchases can be refunded by the operator within {options.refund_window_hours:g} hours of being "
        "credited. A refund takes the credits back: if they were already spent, the balance goes negative and "
        "every request, free models included, is refused until credits are added."
    )
    refunded = [p for p in sheet.all("purchase") if p.figures["refunded"]]
    for purchase in refunded:
        f = purchase.figures
        text += f" Purchase {f['id']} of {usd(f['amount'])} USD was refunded ({usd(f['refunded'])} USD paid back)."
    return text


def _generation(sheet: FactSheet, _options: Options) -> str:
    generation = sheet.first("generation")
    if generation is not None:
        f = generation.figures
        return (
            f"Generation {f['id']} on {f['model']} cost {usd(f['cost'])} USD: {f['tokens_prompt']} prompt tokens "
            f"and {f['tokens_completion']} completion tokens (at {f['created_at']})."
        )
    missing = sheet.first("generation_missing")
    if missing is not None:
        return f"I found no generation {missing.figures['id']} on your account."
    return (
        "Give me the generation id (the `id` of a completion, also sent as the X-Generation-Id header) and I will "
        "tell its cost and tokens; GET /api/v1/generation?id=... answers the same."
    )


def _models(sheet: FactSheet, _options: Options) -> str:
    prices = sheet.all("model_price")
    if not prices:
        return "GET /api/v1/models lists every model this gateway serves with its prices."
    lines = []
    for fact in prices:
        f = fact.figures
        price = (
            "free"
            if f["free"]
            else f"{usd(f['prompt_per_million'])} USD per million prompt tokens, "
            f"{usd(f['completion_per_million'])} USD per million completion tokens"
        )
        lines.append(f"- {f['model']}: {price}")
    return "Models on this gateway (GET /api/v1/models lists them all):\n" + "\n".join(lines)


def _endpoints(_sheet: FactSheet, _options: Options) -> str:
    return (
        "With any key of the account: GET /api/v1/balance answers with the balance, this key's cap, the limits and "
        "why requests were refused; GET /api/v1/credits gives total credits and usage; GET /api/v1/key gives this "
        "key's cap and usage; GET /api/v1/credits/purchases lists payments; POST /api/v1/assistant answers questions "
        "like this one."
    )


def _other(_sheet: FactSheet, _options: Options) -> str:
    return (
        "I can only answer about your own account, the one this key (or sign-in) belongs to. I cannot look up "
        "another account or an email address; its owner can ask me with their own key."
    )


def _change(_sheet: FactSheet, _options: Options) -> str:
    return (
        "I only explain; I cannot change keys, limits or payments. Raise or remove a key's cap on the dashboard's "
        "Keys page or with PATCH /api/v1/keys/{hash} and a management key; add credits on the Credits page."
    )


def _unknown(_sheet: FactSheet, _options: Options) -> str:
    return (
        "I am not sure what you are asking, so here is your account summary and the documentation closest to "
        "your question."
    )


TEMPLATES: dict[Intent, Callable[[FactSheet, Options], str]] = {
    Intent.BALANCE: _balance,
    Intent.PENDING_PURCHASE: _pending,
    Intent.KEY_CAP: _key_cap,
    Intent.FREE_MODELS: _free,
    Intent.REFUSAL_402: _refusal(
        (*_MONEY_REFUSALS, "payment_pending"),
        "A 402 means the request could not be paid for: the balance is negative (balance_negative) or 0 "
        "(balance_empty), the request may cost more than is available (insufficient_for_request), or more than "
        "the key's cap leaves (key_cap_insufficient).",
    ),
    Intent.REFUSAL_403: _refusal(
        ("key_cap_exhausted", "management_key", "key_cap"),
        "A 403 means this key may not make the request: its spending cap is used up (key_cap_exhausted), or it is "
        "a management key.",
    ),
    Intent.REFUSAL_429: _refusal(
        _RATE_REFUSALS,
        "A 429 means a rate limit is reached: on free models the per-minute (free_per_minute) or per-day "
        "(free_daily_cap) allowance of the account, otherwise a request, token or concurrency limit set on the "
        "key or the account (rate_limited). Paying does not lift a per-minute limit; wait for its reset.",
    ),
    Intent.KEY_DISABLED: _key_disabled,
    Intent.BUY_CREDITS: _buy,
    Intent.CRYPTO: _crypto,
    Intent.AUTO_RECHARGE: _auto,
    Intent.REFUNDS: _refunds,
    Intent.GENERATION_COST: _generation,
    Intent.MODELS: _models,
    Intent.API_ENDPOINTS: _endpoints,
    Intent.OTHER_ACCOUNT: _other,
    Intent.CHANGE_REQUEST: _change,
    Intent.UNKNOWN: _unknown,
}


def grounded(intent: Intent, sheet: FactSheet, options: Options) -> str:
    lead = TEMPLATES[intent](sheet, options)
    if intent is Intent.OTHER_ACCOUNT:
        return lead
    return f"{lead}\n\n{status(sheet)}"
