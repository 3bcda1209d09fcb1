"""Account, credit and key administration shared by the admin CLI, the admin API and /api/v1/keys.

Input arrives as users typed it (USD strings, reset names) and is checked here once, with errors
that say what to send instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from tollway.auth.keys import generate_key
from tollway.auth.records import AccountRecord, KeyRecord, LimitReset
from tollway.auth.store import AccountStore, KeyChanges
from tollway.clock import Clock
from tollway.errors import InvalidRequest, NotFound
from tollway.ledger.book import AccountSnapshot, KeySnapshot
from tollway.ledger.records import EntryKind, LedgerEntry
from tollway.ledger.windows import parse_limit_reset
from tollway.money import MoneyFormatError, usd_to_nanos

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class MoneyView(Protocol):
    async def append(
        self,
        account_id: str,
        kind: EntryKind,
        amount_nanos: int,
        *,
        reason: str | None = None,
        reference: str | None = None,
    ) -> LedgerEntry | None: ...

    async def account_figures(self, account_id: str) -> AccountSnapshot: ...

    async def key_figures(self, key: KeyRecord) -> KeySnapshot: ...


@dataclass(frozen=True, slots=True)
class CreatedKey:
    plain: str
    record: KeyRecord


def parse_usd(value: Any, field: str, *, allow_zero: bool = True, allow_null: bool = False) -> int | None:
    """A USD amount from JSON or the command line, as nano-USD; negative or malformed input is refused."""
    if value is None:
        if allow_null:
            return None
        raise InvalidRequest(f"{field} is required: a USD amount such as 5 or 2.50", metadata={"field": field})
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRequest(f"{field} must be a USD amount such as 5 or 2.50", metadata={"field": field})
    try:
        nanos = usd_to_nanos(value, field)
    except MoneyFormatError as exc:
        raise InvalidRequest(str(exc), metadata={"field": field}) from exc
    if nanos < 0 or (nanos == 0 and not allow_zero):
        raise InvalidRequest(
            f"{field} must be {'zero or ' if allow_zero else ''}a positive USD amount, got {value}",
            metadata={"field": field},
        )
    return nanos


def parse_reset(value: Any) -> LimitReset | None:
    try:
        return parse_limit_reset(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), metadata={"field": "limit_reset"}) from exc


def check_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email) or len(email) > 320:
        raise InvalidRequest(f"{email!r} is not an email address", metadata={"field": "email"})
    return email


class AccountsService:
    def __init__(self, store: AccountStore, money: MoneyView, clock: Clock) -> None:
        self.store = store
        self.money = money
        self._clock = clock

    async def create_account(self, email: str) -> AccountRecord:
        return await self.store.create_account(check_email(email), self._clock.now_us())

    async def require_account(self, account_id: str) -> AccountRecord:
        account = await self.store.account(account_id)
        if account is None:
            raise NotFound(f"No account with id {account_id!r}")
        return account

    async def grant(self, account_id: str, amount: Any, reason: str | None) -> LedgerEntry:
        nanos = parse_usd(amount, "amount", allow_zero=False)
        assert nanos is not None
        await self.require_account(account_id)
        entry = await self.money.append(account_id, EntryKind.GRANT, nanos, reason=reason or "admin grant")
        assert entry is not None  # grants carry no reference, so they are never duplicates
        return entry

    async def record_purchase(self, account_id: str, amount: Any, reference: str, reason: str | None) -> LedgerEntry:
        """Credits paid outside Tollway; the reference makes a repeated call a no-op, not a second credit."""
        nanos = parse_usd(amount, "amount", allow_zero=False)
        assert nanos is not None
        await self.require_account(account_id)
        entry = await self.money.append(
            account_id, EntryKind.PURCHASE, nanos, reason=reason or "purchase", reference=f"manual:{reference}"
        )
        if entry is None:
            raise InvalidRequest(f"purchase {reference!r} was already recorded", metadata={"field": "reference"})
        return entry

    async def create_key(
        self,
        account_id: str,
        *,
        name: Any,
        limit: Any = None,
        limit_reset: Any = None,
        management: bool = False,
        include_byok_in_limit: bool = False,
        expires_at_us: int | None = None,
        creator_user_id: str | None = None,
    ) -> CreatedKey:
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("name is required: a non-empty string", metadata={"field": "name"})
        limit_nanos = parse_usd(limit, "limit", allow_null=True)
        reset = parse_reset(limit_reset)
        await self.require_account(account_id)
        new_key = generate_key(management=management)
        record = await self.store.create_key(
            account_id,
            new_key,
            name=name.strip(),
            management=management,
            limit_nanos=limit_nanos,
            limit_reset=reset,
            include_byok_in_limit=include_byok_in_limit,
            expires_at_us=expires_at_us,
            creator_user_id=creator_user_id,
            now_us=self._clock.now_us(),
        )
        return CreatedKey(plain=new_key.plain, record=record)

    async def update_key(self, key_hash: str, changes: KeyChanges) -> KeyRecord:
        record = await self.store.update_key(key_hash, changes, self._clock.now_us())
        if record is None:
            raise NotFound(f"No key with hash {key_hash}")
        return record

    async def delete_key(self, key_hash: str) -> None:
        if not await self.store.delete_key(key_hash, self._clock.now_us()):
            raise NotFound(f"No key with hash {key_hash}")
