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


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: str
    email: str
    created_at_us: int
