"""Discord accounts linked to Tollway accounts, through one-time codes shown on the dashboard's Help page.

Stored as rows of the `settings_store` key-value table (no schema change): `discord-code:<sha256 of the
code>` holds the account and expiry of an unused code, `discord-user:<discord user id>` the linked account,
and `discord-account:<account id>` the account's current code, so the Help page shows the same code until it
is used or expires, and an account has one outstanding code at a time. A code is redeemed by deleting its
row: of two concurrent redemptions only one deletes it, so a code binds at most one Discord user, once.
"""

from __future__ import annotations

import hashlib
import secrets

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.clock import Clock
from tollway.db import tables

_S = tables.settings_store
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I to misread
_CODE_CHARS = 10


def _code_row(code: str) -> str:
    normalised = code.strip().upper().replace("-", "").replace(" ", "")
    return "discord-code:" + hashlib.sha256(normalised.encode()).hexdigest()[:48]


def _account_row(account_id: str) -> str:
    return f"discord-account:{account_id[:40]}"


def _user_row(discord_user_id: str) -> str:
    return f"discord-user:{discord_user_id[:32]}"


class DiscordLinks:
    def __init__(self, engine: AsyncEngine, clock: Clock, code_ttl_s: int) -> None:
        self._engine = engine
        self._clock = clock
        self._ttl_us = code_ttl_s * 1_000_000

    async def current_code(self, account_id: str) -> tuple[str, int]:
        """The account's unused, unexpired code, or a new one; and when it expires (epoch µs)."""
        async with self._engine.connect() as connection:
            current = (
                await connection.execute(select(_S.c.value).where(_S.c.name == _account_row(account_id)))
            ).first()
            if current is not None:
                shown = orjson.loads(current.value)
                unused = (
                    await connection.execute(select(_S.c.name).where(_S.c.name == _code_row(shown["code"])))
                ).first()
                if unused is not None and shown["expires_at_us"] > self._clock.now_us():
                    return str(shown["code"]), int(shown["expires_at_us"])
        return await self.new_code(account_id)

    async def new_code(self, account_id: str) -> tuple[str, int]:
        """A fresh one-time code for the account (its previous one stops working) and when it expires."""
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(_CODE_CHARS))
        code = f"{raw[:5]}-{raw[5:]}"
        expires_at_us = self._clock.now_us() + self._ttl_us
        value = orjson.dumps({"account_id": account_id, "expires_at_us": expires_at_us}).decode()
        shown = orjson.dumps({"code": code, "expires_at_us": expires_at_us}).decode()
        async with self._engine.begin() as connection:
            previous = (
                await connection.execute(select(_S.c.value).where(_S.c.name == _account_row(account_id)))
            ).first()
            if previous is not None:
                old_code = orjson.loads(previous.value)["code"]
                await connection.execute(
                    delete(_S).where(_S.c.name.in_([_code_row(old_code), _account_row(account_id)]))
                )
            await connection.execute(_S.insert().values(name=_code_row(code), value=value))
            await connection.execute(_S.insert().values(name=_account_row(account_id), value=shown))
        return code, expires_at_us

    async def redeem(self, code: str, discord_user_id: str) -> str | None:
        """Bind the Discord user to the code's account; None when the code is unknown, used or expired."""
        name = _code_row(code)
        async with self._engine.begin() as connection:
            row = (await connection.execute(select(_S.c.value).where(_S.c.name == name))).first()
            if row is None:
                return None
            deleted = await connection.execute(delete(_S).where(_S.c.name == name))
            if deleted.rowcount != 1:
                return None
            stored = orjson.loads(row.value)
            if stored["expires_at_us"] <= self._clock.now_us():
                return None
            account_id = str(stored["account_id"])
            await connection.execute(delete(_S).where(_S.c.name == _user_row(discord_user_id)))
            await connection.execute(_S.insert().values(name=_user_row(discord_user_id), value=account_id))
        return account_id

    async def account_for(self, discord_user_id: str) -> str | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_S.c.value).where(_S.c.name == _user_row(discord_user_id)))).first()
        return None if row is None else str(row.value)

    async def unlink(self, discord_user_id: str) -> bool:
        async with self._engine.begin() as connection:
            deleted = await connection.execute(delete(_S).where(_S.c.name == _user_row(discord_user_id)))
        return bool(deleted.rowcount)
