"""Dashboard users: argon2 password hashes, sessions stored by hash, invites, CSRF tokens bound to the session."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.dashboard.guard import LoginThrottle, PasswordHashing
from tollway.db import tables
from tollway.db.upsert import insert_ignoring_duplicates
from tollway.ids import prefixed_id

_U = tables.users
_S = tables.web_sessions
_I = tables.invites
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
    def __init__(
        self, engine: AsyncEngine, hashing: PasswordHashing | None = None, throttle: LoginThrottle | None = None
    ) -> None:
        self._engine = engine
        self.hashing = hashing or PasswordHashing()
        self.throttle = throttle or LoginThrottle(per_minute=5, burst=10)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

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
        password_hash = await self.hashing.hash(password)
        async with self._engine.begin() as connection:
            inserted = (
                await connection.execute(
                    insert_ignoring_duplicates(_U, connection.dialect.name)
                    .values(
                        id=user_id,
                        email=email.lower(),
                        password_hash=password_hash,
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
            await self.hashing.hash(password)  # same work whether or not the user exists
            return None
        return _user(row) if await self.hashing.verify(row.password_hash, password) else None

    async def promote(self, email: str) -> bool:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(_U).where(func.lower(_U.c.email) == email.lower()).values(is_admin=True)
            )
        return bool(result.rowcount)

    async def start_session(self, user: User, now_us: int) -> str:
        """A new session; returns the cookie value. Only its sha256 is stored; expired sessions are purged here."""
        session_id = secrets.token_urlsafe(32)
        async with self._engine.begin() as connection:
            await connection.execute(delete(_S).where(_S.c.expires_at_us <= now_us))
            await connection.execute(
                _S.insert().values(
                    id=session_hash(session_id),
                    user_id=user.id,
                    created_at_us=now_us,
                    expires_at_us=now_us + _SESSION_US,
                )
            )
        return session_id

    async def session_user(self, session_id: str, now_us: int) -> User | None:
        query = (
            select(_U)
            .join(_S, _S.c.user_id == _U.c.id)
            .where(_S.c.id == session_hash(session_id), _S.c.expires_at_us > now_us)
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else _user(row)

    async def end_session(self, session_id: str) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(delete(_S).where(_S.c.id == session_hash(session_id)))

    async def create_invite(self, email: str, created_by: str, now_us: int, ttl_us: int) -> str:
        """A single-use sign-up token for one email; returns the token (only its sha256 is stored)."""
        token = secrets.token_urlsafe(24)
        async with self._engine.begin() as connection:
            await connection.execute(
                _I.insert().values(
                    token_hash=session_hash(token),
                    email=email.lower(),
                    created_by=created_by,
                    created_at_us=now_us,
                    expires_at_us=now_us + ttl_us,
                )
            )
        return token

    async def claim_invite(self, token: str, email: str, now_us: int) -> bool:
        """Use an invite once: true when it was unused, unexpired and made for this email."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(_I)
                .where(
                    _I.c.token_hash == session_hash(token),
                    _I.c.email == email.lower(),
                    _I.c.used_at_us.is_(None),
                    _I.c.expires_at_us > now_us,
                )
                .values(used_at_us=now_us)
            )
        return bool(result.rowcount)

    async def invite_email(self, token: str, now_us: int) -> str | None:
        """The email an unused, unexpired invite was made for (to fill the sign-up form)."""
        async with self._engine.connect() as connection:
            return await connection.scalar(
                select(_I.c.email).where(
                    _I.c.token_hash == session_hash(token), _I.c.used_at_us.is_(None), _I.c.expires_at_us > now_us
                )
            )


def session_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(secret: bytes, session_id: str) -> str:
    return hmac.new(secret, f"csrf:{session_id}".encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def csrf_ok(secret: bytes, session_id: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(secret, session_id), str(token))
