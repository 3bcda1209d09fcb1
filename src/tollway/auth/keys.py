"""Key format: sk-tw-v1-<64 hex> for inference, sk-tw-mgmt-v1-<64 hex> for management.

Only the SHA-256 hex digest of the whole key string is stored; that digest is the key's public `hash`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

INFERENCE_PREFIX = "sk-tw-v1-"
MANAGEMENT_PREFIX = "sk-tw-mgmt-v1-"
_KEY_PATTERN = re.compile(r"^sk-tw-(?:mgmt-)?v1-[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class NewKey:
    plain: str
    hash: str
    label: str


def hash_key(plain: str) -> str:
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def looks_like_key(plain: str) -> bool:
    return bool(_KEY_PATTERN.match(plain))


def mask_key(plain: str) -> str:
    """The display label, e.g. sk-tw-v1-0e6...1c96: enough to recognise a key, never enough to use it."""
    prefix = MANAGEMENT_PREFIX if plain.startswith(MANAGEMENT_PREFIX) else INFERENCE_PREFIX
    return f"{plain[: len(prefix) + 3]}...{plain[-4:]}"


def generate_key(management: bool = False) -> NewKey:
    prefix = MANAGEMENT_PREFIX if management else INFERENCE_PREFIX
    plain = prefix + secrets.token_hex(32)
    return NewKey(plain=plain, hash=hash_key(plain), label=mask_key(plain))
