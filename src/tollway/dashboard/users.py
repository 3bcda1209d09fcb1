"""Dashboard users: argon2 password hashes, database-backed sessions, CSRF tokens bound to the session."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.db import tables
from tollway.db.upsert import insert_ignoring_duplicates
from tollway.ids import prefixed_id

_U = tables.users
_S = tables.web_sessions
_SESSION_US = 14 * 24 * 3600 * 1_000_000
MIN_PASSWORD = 8


class UserExists(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    account_id: str
    role: str
    is_admin: bool


def _user(row: object) -> User:
    return User(row.id, row.email, row.account_id, row.role, bool(row.is_admin))  # type: ignore[attr-defined]


class UserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._hasher = PasswordHasher()

    async def secret(self, configured: str | None) -> bytes:
        """The CSRF signing secret: configured, or generated once and kept in the database."""
        if configured:
            return configured.encode()
        async with self._engine.begin() as connection:
            await connection.execute(
                insert_ignoring_duplicates(tables.settings_store, connection.dialect.name).values(
                    name="session_secret", value=secrets.token_hex(32)
                )
            )
            value = await connection.scalar(
                select(tables.settings_store.c.value).where(tables.settings_store.c.name == "session_secret")
            )
        return str(value).encode()

    async def create(self, email: str, password: str, account_id: str, role: str, is_admin: bool, now_us: int) -> User:
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"password must be at least {MIN_PASSWORD} characters")
        user_id = prefixed_id("user")
        async with self._engine.begin() as connection:
            inserted = (
                await connection.execute(
                    insert_ignoring_duplicates(_U, connection.dialect.name)
                    .values(
                        id=user_id,
                        email=email.lower(),
                        password_hash=self._hasher.hash(password),
                        account_id=account_id,
                        role=role,
                        is_admin=is_admin,
                        created_at_us=now_us,
                    )
                    .returning(_U.c.id)
                )
            ).scalar()
        if inserted is None:
            raise UserExists(f"{email} already has an account")
        return User(user_id, email.lower(), account_id, role, is_admin)

    async def by_email(self, email: str) -> User | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_U).where(func.lower(_U.c.email) == email.lower()))).first()
        return None if row is None else _user(row)

    async def check_password(self, email: str, password: str) -> User | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_U).where(func.lower(_U.c.email) == email.lower()))).first()
        if row is None:
            self._hasher.hash(password)  # same work whether or not the user exists
            return None
        try:
            self._hasher.verify(row.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return _user(row)

    async def promote(self, email: str) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(_U).where(func.lower(_U.c.email) == email.lower()).values(is_admin=True)
            )
        return bool(result.rowcount)

    async def start_session(self, user: User, now_us: int) -> str:
        session_id = secrets.token_urlsafe(32)
        async with self._engine.begin() as connection:
            await connection.execute(
                _S.insert().values(
                    id=session_id, user_id=user.id, created_at_us=now_us, expires_at_us=now_us + _SESSION_US
                )
            )
        return session_id

    async def session_user(self, session_id: str, now_us: int) -> User | None:
        query = select(_U).join(_S, _S.c.user_id == _U.c.id).where(_S.c.id == session_id, _S.c.expires_at_us > now_us)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else _user(row)

    async def end_session(self, session_id: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(delete(_S).where(_S.c.id == session_id))


def csrf_token(secret: bytes, session_id: str) -> str:
    return hmac.new(secret, f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, session_id: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(secret, session_id), str(token))
