"""Identifiers shaped as OpenRouter's: gen-<unix seconds>-<20 alphanumerics>, and prefixed random ids."""

from __future__ import annotations

import os
import secrets
import string

_ALPHABET = (string.ascii_letters + string.digits).encode()
_UNBIASED = 256 - 256 % len(_ALPHABET)  # bytes at or above this would favour the first letters
_TO_ALPHABET = bytes(_ALPHABET[b % len(_ALPHABET)] for b in range(256))
_ABOVE_UNBIASED = bytes(range(_UNBIASED, 256))


def random_text(length: int) -> str:
    """Uniform random alphanumerics from the OS's generator, mapped in C (this runs on every request)."""
    text = b""
    while len(text) < length:
        text += os.urandom(length + 8).translate(_TO_ALPHABET, _ABOVE_UNBIASED)
    return text[:length].decode()


def generation_id(epoch_seconds: int) -> str:
    return f"gen-{epoch_seconds}-{random_text(20)}"


def prefixed_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
