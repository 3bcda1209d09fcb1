"""Identifiers shaped as OpenRouter's: gen-<unix seconds>-<20 alphanumerics>, and prefixed random ids."""

from __future__ import annotations

import os
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
_BASE = len(_ALPHABET)


def random_text(length: int) -> str:
    """Random alphanumerics from the OS's generator (one urandom call: this runs on every request)."""
    number = int.from_bytes(os.urandom(length), "big")
    characters = []
    for _ in range(length):
        number, index = divmod(number, _BASE)
        characters.append(_ALPHABET[index])
    return "".join(characters)


def generation_id(epoch_seconds: int) -> str:
    return f"gen-{epoch_seconds}-{random_text(20)}"


def prefixed_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
