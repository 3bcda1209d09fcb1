"""Identifiers shaped as OpenRouter's: gen-<unix seconds>-<20 alphanumerics>, and prefixed random ids."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_text(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def generation_id(epoch_seconds: int) -> str:
    return f"gen-{epoch_seconds}-{random_text(20)}"


def prefixed_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
