"""SQL access to accounts and API keys (no money here: balances live in the ledger)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.keys import NewKey
from tollway.auth.records import AccountRecord, KeyRecord, LimitReset
from tollway.db import tables
from tollway.db.revisions import next_revision
from tollway.ids import prefixed_id

_A = tables.accounts
_K = tables.api_keys

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """A partial update of a key; fields left as UNSET keep their value."""

    name: str = _UNSET
    disabled: bool = _UNSET
    limit_nanos: int | None = _UNSET
    limit_reset: LimitReset | None = _UNSET
    include_byok_in_limit: bool = _UNSET
    expires_at_us: int | None = _UNSET

    def values(self) -> dict[str, Any]:
        found = {name: getattr(self, name) for name in self.__dataclass_fields__}
        present = {name: value for name, value in found.items() if value is not _UNSET}
        if "limit_reset" in present and present["limit_reset"] is not None:
            present["limit_reset"] = present["limit_reset"].value
        return present


def key_from_row(row: Any) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        hash=row.hash,
        account_id=row.account_id,
        name=row.name,
        label=row.label,
        is_management=bool(row.is_management),
        disabled=bool(row.disabled),
        limit_nanos=row.limit_nanos,
        limit_reset=LimitReset(row.limit_reset) if row.limit_reset else None,
        include_byok_in_limit=bool(row.include_byok_in_limit),
        creator_user_id=row.creator_user_id,
        created_at_us=row.created_at_us,
        updated_at_us=row.updated_at_us,
        expires_at_us=row.expires_at_us,
        deleted_at_us=row.deleted_at_us,
        revision=row.revision,
    )


def account_from_row(row: Any) -> AccountRecord:
    return AccountRecord(id=row.id, email=row.email, created_at_us=row.created_at_us)


class AccountStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.engine = engine

    async def create_account(self, email: str, now_us: int) -> AccountRecord:
        record = AccountRecord(id=prefixed_id("acct"), email=email, created_at_us=now_us)
        async with self._engine.begin() as connection:
            await connection.execute(_A.insert().values(id=record.id, email=email, created_at_us=now_us))
        return record

    async def account(self, account_id: str) -> AccountRecord | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_A).where(_A.c.id == account_id))).first()
        return None if row is None else account_from_row(row)

    async def accounts(self, email: str | None = None, limit: int = 1000, offset: int = 0) -> list[AccountRecord]:
        query = select(_A).order_by(_A.c.created_at_us, _A.c.id).limit(limit).offset(offset)
        if email is not None:
            query = query.where(func.lower(_A.c.email) == email.lower())
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [account_from_row(row) for row in rows]

    async def create_key(
        self,
        account_id: str,
        new_key: NewKey,
        *,
        name: str,
        management: bool,
        limit_nanos: int | None,
        limit_reset: LimitReset | None,
        include_byok_in_limit: bool,
        expires_at_us: int | None,
        creator_user_id: str | None,
        now_us: int,
    ) -> KeyRecord:
        key_id = prefixed_id("key")
        async with self._engine.begin() as connection:
            revision = await next_revision(connection, f"key:{key_id}", now_us)
            values = {
                "id": key_id,
                "hash": new_key.hash,
                "account_id": account_id,
                "name": name,
                "label": new_key.label,
                "is_management": management,
                "disabled": False,
                "limit_nanos": limit_nanos,
                "limit_reset": limit_reset.value if limit_reset else None,
                "include_byok_in_limit": include_byok_in_limit,
                "creator_user_id": creator_user_id,
                "created_at_us": now_us,
                "updated_at_us": None,
                "expires_at_us": expires_at_us,
                "deleted_at_us": None,
                "revision": revision,
            }
            await connection.execute(_K.insert().values(**values))
            row = (await connection.execute(select(_K).where(_K.c.hash == new_key.hash))).one()
        return key_from_row(row)

    async def key_by_hash(self, key_hash: str) -> KeyRecord | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_K).where(_K.c.hash == key_hash))).first()
        return None if row is None else key_from_row(row)

    async def keys_for_account(
        self, account_id: str, *, include_disabled: bool = True, limit: int = 100, offset: int = 0
    ) -> list[KeyRecord]:
        query = (
            select(_K)
            .where(_K.c.account_id == account_id, _K.c.deleted_at_us.is_(None))
            .order_by(_K.c.created_at_us.desc(), _K.c.id)
            .limit(limit)
            .offset(offset)
        )
        if not include_disabled:
            query = query.where(_K.c.disabled.is_(False))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [key_from_row(row) for row in rows]

    async def update_key(self, key_hash: str, changes: KeyChanges, now_us: int) -> KeyRecord | None:
        async with self._engine.begin() as connection:
            revision = await next_revision(connection, f"key:{key_hash[:16]}", now_us)
            await connection.execute(
                update(_K)
                .where(_K.c.hash == key_hash, _K.c.deleted_at_us.is_(None))
                .values(**changes.values(), updated_at_us=now_us, revision=revision)
            )
            row = (await connection.execute(select(_K).where(_K.c.hash == key_hash))).first()
        if row is None or row.deleted_at_us is not None:
            return None
        return key_from_row(row)

    async def delete_key(self, key_hash: str, now_us: int) -> bool:
        """Soft delete: the key stops working at once, its usage stays in the ledger."""
        async with self._engine.begin() as connection:
            revision = await next_revision(connection, f"key:{key_hash[:16]}", now_us)
            result = await connection.execute(
                update(_K)
                .where(_K.c.hash == key_hash, _K.c.deleted_at_us.is_(None))
                .values(deleted_at_us=now_us, updated_at_us=now_us, revision=revision)
            )
        return bool(result.rowcount)

    async def keys_changed_after(self, revision: int) -> list[KeyRecord]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(select(_K).where(_K.c.revision > revision))).all()
        return [key_from_row(row) for row in rows]

    async def max_key_revision(self) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(select(func.coalesce(func.max(_K.c.revision), 0)))
        return int(value or 0)
