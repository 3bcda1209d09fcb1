"""What a question is about: a small weighted vocabulary per intent, tolerant of typos, no model needed."""

from __future__ import annotations

import difflib
import re
from enum import StrEnum


class Intent(StrEnum):
    BALANCE = "balance"
    PENDING_PURCHASE = "pending_purchase"
    KEY_CAP = "key_cap"
    FREE_MODELS = "free_models"
    REFUSAL_402 = "refusal_402"
    REFUSAL_403 = "refusal_403"
    REFUSAL_429 = "refusal_429"
    KEY_DISABLED = "key_disabled"
    BUY_CREDITS = "buy_credits"
    CRYPTO = "crypto"
    AUTO_RECHARGE = "auto_recharge"
    REFUNDS = "refunds"
    GENERATION_COST = "generation_cost"
    MODELS = "models"
    API_ENDPOINTS = "api_endpoints"
    OTHER_ACCOUNT = "other_account"
    CHANGE_REQUEST = "change_request"
    UNKNOWN = "unknown"


# word -> weight, per intent; multi-word phrases are matched on the normalised text.
_VOCABULARY: dict[Intent, dict[str, float]] = {
    Intent.BALANCE: {
        "balance": 3,
        "credit": 2,
        "credits": 2,
        "remaining": 2,
        "left": 1.5,
        "money": 2,
        "funds": 2,
        "how much": 1.5,
        "do i have": 1.5,
        "spend": 1,
        "spendable": 2,
        "empty": 1,
        "zero": 1,
        "0": 0.5,
    },
    Intent.PENDING_PURCHASE: {
        "paid": 3,
        "payment": 2.5,
        "pay": 1.5,
        "pending": 3,
        "bought": 2.5,
        "purchase": 2,
        "purchased": 2,
        "charged": 2.5,
        "card": 1.5,
        "where is": 2,
        "arrive": 2,
        "arrived": 2,
        "dollars": 1,
        "5 dollars": 1,
        "not credited": 3,
        "show up": 2,
        "invoice": 2.5,
        "invoices": 2.5,
        "receipt": 2.5,
        "history": 1.5,
    },
    Intent.KEY_CAP: {
        "key limit": 4,
        "cap": 3,
        "limit": 1.5,
        "difference": 2.5,
        "versus": 1,
        "vs": 1,
        "key": 1,
        "per key": 2,
        "limit_remaining": 3,
        "monthly": 1,
        "daily limit": 1,
        "spending limit": 4,
        "spending": 1.5,
    },
    Intent.FREE_MODELS: {
        "free": 3,
        ":free": 3,
        "free model": 3,
        "free models": 3,
        "per day": 1.5,
        "daily": 1.5,
        "50": 0.5,
        "1000": 0.5,
    },
    Intent.REFUSAL_402: {
        "402": 5,
        "payment required": 4,
        "insufficient": 3,
        "not enough": 2,
        "afford": 2,
        "max_tokens": 3,
        "lowered": 3,
    },
    Intent.REFUSAL_403: {"403": 5, "forbidden": 4, "key limit exceeded": 4, "refused": 1, "denied": 2},
    Intent.REFUSAL_429: {
        "429": 7,
        "rate limit": 4,
        "limited": 1,
        "rate limited": 4,
        "too many": 3,
        "throttled": 3,
        "slow down": 2,
        "per minute": 3,
        "rate": 1,
    },
    Intent.KEY_DISABLED: {
        "disabled": 4,
        "expired": 4,
        "401": 5,
        "unauthorized": 3,
        "enable": 2,
        "invalid key": 3,
    },
    Intent.BUY_CREDITS: {
        "buy": 3,
        "top up": 3,
        "topup": 3,
        "add credits": 4,
        "by credits": 4,
        "add credit": 4,
        "purchase credits": 4,
        "checkout": 3,
        "get more": 2,
        "recharge": 1,
    },
    Intent.CRYPTO: {"crypto": 5, "bitcoin": 5, "btc": 4, "usdc": 5, "eth": 4, "ethereum": 5, "coinbase": 5},
    Intent.AUTO_RECHARGE: {
        "auto-recharge": 6,
        "auto recharge": 6,
        "autorecharge": 6,
        "automatic": 3,
        "automatically": 3,
    },
    Intent.REFUNDS: {"refund": 5, "refunded": 5, "money back": 5, "chargeback": 4, "dispute": 3, "negative": 2},
    Intent.GENERATION_COST: {"generation": 3, "gen-": 5, "request cost": 3, "cost": 1.5, "tokens": 1, "cost me": 2},
    Intent.MODELS: {"model": 1.5, "models": 2.5, "which models": 4, "price": 2, "prices": 2, "pricing": 2},
    Intent.API_ENDPOINTS: {
        "api": 2,
        "endpoint": 3,
        "endpoints": 3,
        "curl": 3,
        "programmatically": 3,
        "/balance": 4,
        "/credits": 3,
        "/key": 3,
        "check via": 2,
    },
    Intent.CHANGE_REQUEST: {
        "raise my": 7,
        "increase my": 7,
        "change my": 7,
        "delete my": 7,
        "disable my": 7,
        "give me credits": 7,
        "add credits for me": 7,
        "reset my": 7,
        "set my": 6,
        "remove my": 7,
    },
}
# When two intents score alike, the earlier answers more people.
_ORDER = list(_VOCABULARY)
_TOKEN = re.compile(r"[a-z0-9:/_\-]+")
_SINGLE_WORDS = sorted({w for vocabulary in _VOCABULARY.values() for w in vocabulary if " " not in w and len(w) >= 4})
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[a-z]{2,}", re.IGNORECASE)
_ACCOUNT_ID = re.compile(r"\bacct_[A-Za-z0-9]+\b")
_OTHER_PEOPLE = re.compile(
    r"\b(someone else'?s?|another (?:user|account|person)|other (?:user|account|people)"
    r"|my (?:friend|colleague|boss)'?s?|(?:his|her|their) (?:balance|account|credits|key))\b"
)
GENERATION_ID = re.compile(r"\bgen-[A-Za-z0-9_\-]{6,}\b")


def normalise(text: str) -> tuple[str, list[str]]:
    """Lower-case text with typos of known words corrected, and its tokens."""
    tokens = _TOKEN.findall(text.lower())
    fixed = []
    for token in tokens:
        if len(token) >= 4 and not token.isdigit() and token not in _SINGLE_WORDS:
            close = difflib.get_close_matches(token, _SINGLE_WORDS, n=1, cutoff=0.8)
            token = close[0] if close else token
        fixed.append(token)
    return " ".join(fixed), fixed


def scores(text: str) -> dict[Intent, float]:
    joined, tokens = normalise(text)
    padded = f" {joined} "
    token_set = set(tokens)
    found: dict[Intent, float] = {}
    for intent, vocabulary in _VOCABULARY.items():
        total = 0.0
        for word, weight in vocabulary.items():
            phrase = " " in word and f" {word} " in padded
            fragment = word.startswith(("gen-", "/")) and word in joined
            if phrase or fragment or word in token_set:
                total += weight
        if total:
            found[intent] = total
    return found


def other_account(text: str, own_email: str | None, own_account_id: str) -> bool:
    """The question asks about an account that is not the asker's (an email, an id, "someone else's")."""
    for email in _EMAIL.findall(text):
        if own_email is None or email.lower() != own_email.lower():
            return True
    if any(found != own_account_id for found in _ACCOUNT_ID.findall(text)):
        return True
    return bool(_OTHER_PEOPLE.search(text.lower()))


def classify(text: str, own_email: str | None, own_account_id: str) -> Intent:
    if other_account(text, own_email, own_account_id):
        return Intent.OTHER_ACCOUNT
    if GENERATION_ID.search(text):
        return Intent.GENERATION_COST
    found = scores(text)
    if not found:
        return Intent.UNKNOWN
    best = max(found.values())
    if best < 1.5:
        return Intent.UNKNOWN
    return next(intent for intent in _ORDER if found.get(intent) == best)
