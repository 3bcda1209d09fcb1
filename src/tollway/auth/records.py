"""Plain records of accounts and API keys; no I/O here. The ledger reads them, never the other way round."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LimitReset(StrEnum):
    """The UTC window a key's spending cap resets in (see `ledger.windows` for the arithmetic)."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    hash: str
    account_id: str
    name: str
    label: str
    is_management: bool
    disabled: bool
    limit_nanos: int | None
    limit_reset: LimitReset | None
    include_byok_in_limit: bool
    creator_user_id: str | None
    created_at_us: int
    updated_at_us: int | None
    expires_at_us: int | None
    deleted_at_us: int | None
    revision: int

    def usable_at(self, now_us: int) -> bool:
        expired = self.expires_at_us is not None and self.expires_at_us <= now_us
        return not (self.disabled or expired or self.deleted_at_us is not None)


def unlimited_key(account_id: str, *, key_id: str, key_hash: str, name: str, label: str, revision: int) -> KeyRecord:
    """An enabled, non-management key with no spending cap, no expiry and no creator, created at time 0."""
    return KeyRecord(
        id=key_id,
        hash=key_hash,
        account_id=account_id,
        name=name,
        label=label,
        is_management=False,
        disabled=False,
        limit_nanos=None,
        limit_reset=None,
        include_byok_in_limit=False,
        creator_user_id=None,
        created_at_us=0,
        updated_at_us=None,
        expires_at_us=None,
        deleted_at_us=None,
        revision=revision,
    )


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: str
    email: str
    created_at_us: int
