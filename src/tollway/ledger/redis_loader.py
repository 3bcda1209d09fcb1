"""Loading an account's or a key's figures into Redis from the ledger, exactly once.

Loads happen on first use and whenever Redis lost the figures (a flush, a restart, an eviction, an
expired hold, a late commit). One process loads a hash once at a time (a lock per hash); across
processes the load script applies only to a hash not yet loaded. Items parked while the hash was not
loaded (settlements, credits) are counted unless the ledger sums already include them, which the
same SQL statement that sums the entries tells; if more were parked meanwhile, the load starts over.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tollway.errors import ServiceUnavailable
from tollway.ledger import redis_scripts as scripts
from tollway.ledger.store import LedgerStore

_LOAD_ATTEMPTS = 50
# Credit entries this recent are marked applied when an account loads, so a poller that reads them
# again afterwards does not count them twice (pollers trail the newest entries by seconds).
_RECENT_CREDITS_US = 24 * 3600 * 1_000_000


def unavailable(exc: Exception | None = None) -> ServiceUnavailable:
    return ServiceUnavailable(
        "Balances cannot be checked because Redis is unreachable; the request was not sent. Retry shortly.",
        metadata={"reason": "book_unavailable"},
        headers={"Retry-After": "1"},
    )


def connect(url: str) -> redis.Redis:
    """A client that retries once on a dropped connection (a Redis restart leaves every pooled one stale).

    Only connection errors are retried, not timeouts; every script is safe to run again after a lost
    reply except a settlement's usage increment, which `tollway reconcile` would then report.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
    )


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FigureLoader:
    def __init__(self, client: redis.Redis, store: LedgerStore) -> None:
        self._client = client
        self._store = store
        self._load_account = client.register_script(scripts.LOAD_ACCOUNT)
        self._load_key = client.register_script(scripts.LOAD_KEY)
        self._locks: dict[str, asyncio.Lock] = {}
        self.reloads = 0  # figures (re)loaded from the ledger by this process
        self.load_retries = 0  # loads begun again because items were parked meanwhile

    async def _epoch(self) -> str:
        """This Redis lifetime's token (created by the first loader after a loss)."""
        await self._client.set(scripts.EPOCH, uuid.uuid4().hex, nx=True)
        return text(await self._client.get(scripts.EPOCH) or "")

    async def load_account(self, account_id: str) -> None:
        """(Re)load an account's figures from the ledger, counting parked usage and credits exactly once."""
        lock = self._locks.setdefault("a:" + account_id, asyncio.Lock())
        async with lock:
            account_key = scripts.account_hash(account_id)
            pending_key = scripts.account_pending(account_id)
            for _ in range(_LOAD_ATTEMPTS):
                if await self._client.hexists(account_key, "loaded"):
                    return
                epoch, version = await self._epoch(), text(await self._client.hget(account_key, "v") or "")
                parked = [text(f) for f in await self._client.hkeys(pending_key)]
                generation_ids = [f[2:] for f in parked if f.startswith("g:")]
                entry_ids = [int(f[2:]) for f in parked if f.startswith("e:")]
                now_us = int(time.time() * 1_000_000)
                load = await self._store.account_load(
                    account_id,
                    generation_ids,
                    entry_ids,
                    recent_credits_since_us=now_us - _RECENT_CREDITS_US,
                    recent_usage_since_us=now_us - scripts.RECENT_USAGE_S * 1_000_000,
                )
                included = [f"g:{g}" for g in load.included_generation_ids]
                included += [f"e:{i}" for i in load.included_entry_ids]
                totals = load.totals
                outcome = await self._load_account(
                    keys=[account_key, pending_key, scripts.EPOCH],
                    args=[
                        scripts.PREFIX,
                        epoch,
                        version,
                        len(parked),
                        *parked,
                        len(included),
                        *included,
                        totals.credits_nanos,
                        totals.usage_nanos,
                        totals.purchased_nanos,
                        totals.granted_nanos,
                        len(load.recent_credit_ids),
                        *load.recent_credit_ids,
                        *load.recent_generation_ids,
                    ],
                )
                if int(outcome[0]) != scripts.PENDING_CHANGED:
                    self.reloads += int(outcome[0])
                    return
                self.load_retries += 1
            raise unavailable()

    async def load_key(self, key_id: str, now_us: int) -> None:
        """(Re)load a key's usage windows from the ledger, counting parked settlements exactly once."""
        lock = self._locks.setdefault("k:" + key_id, asyncio.Lock())
        async with lock:
            key_key = scripts.key_hash(key_id)
            pending_key = scripts.key_pending(key_id)
            for _ in range(_LOAD_ATTEMPTS):
                if await self._client.hexists(key_key, "loaded"):
                    return
                epoch, version = await self._epoch(), text(await self._client.hget(key_key, "v") or "")
                parked = [text(f) for f in await self._client.hkeys(pending_key)]
                since_us = int(time.time() * 1_000_000) - scripts.RECENT_USAGE_S * 1_000_000
                load = await self._store.key_load(key_id, now_us, parked, since_us)
                fields: list[Any] = ["total", load.totals.total_nanos]
                for reset, (start, used) in load.totals.by_window.items():
                    fields += [f"{reset.value[0]}:{start}", used]
                outcome = await self._load_key(
                    keys=[key_key, pending_key, scripts.EPOCH],
                    args=[
                        scripts.PREFIX,
                        epoch,
                        version,
                        len(parked),
                        *parked,
                        len(load.included_generation_ids),
                        *load.included_generation_ids,
                        len(load.recent_generation_ids),
                        *load.recent_generation_ids,
                        *fields,
                    ],
                )
                if int(outcome[0]) != scripts.PENDING_CHANGED:
                    self.reloads += int(outcome[0])
                    return
                self.load_retries += 1
            raise unavailable()
