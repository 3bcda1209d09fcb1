"""The hot-path figures in Redis, so any number of gateway processes share one view of every balance.

Redis is a cache of the ledger, never its truth. Each account and key is a hash loaded from the
ledger of record; every script that reads figures checks the hash's `loaded` marker, and when
Redis lost it (flush, restart, eviction) this process reloads it from the database (once per
process under a lock; across processes the load script applies only to a hash not yet loaded)
and tries again. Usage settled and credits applied meanwhile are parked and counted exactly once
by the reload (see redis_scripts.py and redis_loader.py). A settlement reaches this book after its
commit; when that order could not hold (a late commit, a settlement Redis could not take, an expired
hold whose process may have died between the two), the figures concerned are dropped and reload.

Where the rate limiter shares this Redis, it rides in the book's scripts (book.Rider): a paid request's
limits and concurrency slots are taken in its reserve script and ended in its settle script, so each end
of a request is one round trip, and a request refused for credits takes no limit.

Holds are members of a per-account sorted set scored by their expiry. Each process renews its
open holds every third of the TTL (so a long stream keeps its hold) and sweeps every account's
expired holds twice a second (so a dead process's holds end on time, without `reconcile`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, cast

from redis.exceptions import RedisError

from tollway.auth.records import KeyRecord, LimitReset
from tollway.ledger import redis_scripts as scripts
from tollway.ledger.book import AccountSnapshot, Hold, KeySnapshot, ReserveOutcome, Rider, RiderRefused
from tollway.ledger.records import EntryKind, LedgerEntry
from tollway.ledger.redis_fast import FastScript, ScriptRunner, script_for
from tollway.ledger.redis_loader import FigureLoader, connect, text, unavailable
from tollway.ledger.store import LedgerStore
from tollway.ledger.windows import next_reset_us, window_start_us

log = logging.getLogger("tollway.ledger")

PREFIX = scripts.PREFIX
_ATTEMPTS = 5
_SWEEP_INTERVAL_S = 0.5
_SWEEP_BATCH = 200
MAX_HOLD_AGE_S = 3600.0  # no request lives this long; its hold would otherwise be renewed forever
_SAFE_POLICIES = ("noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl")


async def _done() -> None:
    """Nothing to wait for (the hold was already gone and no rider's step remains)."""


def _window_field(reset: LimitReset, at_us: int) -> str:
    return f"{reset.value[0]}:{window_start_us(reset, at_us)}"


def _key_snapshot(
    key: KeyRecord, now_us: int, total: int, held: int, daily: int, weekly: int, monthly: int
) -> KeySnapshot:
    return KeySnapshot(
        limit_nanos=key.limit_nanos,
        limit_reset=key.limit_reset,
        usage_nanos=total,
        usage_daily_nanos=daily,
        usage_weekly_nanos=weekly,
        usage_monthly_nanos=monthly,
        held_nanos=held,
        resets_at_us=next_reset_us(key.limit_reset, now_us) if key.limit_reset else None,
    )


class RedisBook:
    def __init__(self, store: LedgerStore, origin: str, url: str, hold_ttl_s: float) -> None:
        self._store = store
        self.origin = origin
        self.sync_lock = asyncio.Lock()
        self.watermark = 0
        self.counts_external_usage = False  # each process's settlement script updates the shared figures
        self.settles_after_answer = True  # the settlement's script is written before the answer; its reply waits
        self._url = url
        self._client = connect(url)
        # The two scripts of every paid request run on the lean runner; the rest on redis-py.
        self._runner = ScriptRunner.from_url(url)
        self._reserve = script_for(self._client, self._runner, scripts.RESERVE)
        self._settle = script_for(self._client, self._runner, scripts.SETTLE)
        self._ridden: dict[str, tuple[Any, Any]] = {}  # a rider's library -> its reserve and settle scripts
        self._renew = self._client.register_script(scripts.RENEW)
        self._sweep = self._client.register_script(scripts.SWEEP)
        self._apply_once = self._client.register_script(scripts.APPLY_ONCE)
        self._forget = self._client.register_script(scripts.FORGET)
        self.hold_ttl_s = hold_ttl_s
        self._hold_ttl_us = int(hold_ttl_s * 1_000_000)
        self._hold_ids = itertools.count(1)
        self._open: dict[int, tuple[str, Hold]] = {}
        self._opened_at: dict[int, float] = {}  # monotonic time each open hold was placed
        # Credit entries written to the ledger but not yet counted in Redis (it was unreachable).
        self._unapplied: list[LedgerEntry] = []
        # Settlements Redis did not take (unreachable): their figures reload once it answers again.
        self._unsettled: list[LedgerEntry] = []
        self._process = uuid.uuid4().hex[:12]
        self._loader = FigureLoader(self._client, store)

    account_key = staticmethod(scripts.account_hash)
    key_key = staticmethod(scripts.key_hash)
    holds_key = staticmethod(scripts.holds_set)
    pending_account_key = staticmethod(scripts.account_pending)
    pending_key_key = staticmethod(scripts.key_pending)

    async def start(self) -> None:
        self.watermark = await self._store.max_entry_id()
        try:
            await self._client.set(scripts.EPOCH, uuid.uuid4().hex, nx=True)
        except RedisError as exc:
            log.warning("redis unreachable at start-up", extra={"error": str(exc)[:300]})
            return
        await self.warn_if_evicting()

    async def warn_if_evicting(self) -> str | None:
        """Log a warning when Redis may evict the figures (they carry no expiry); returns the policy."""
        try:
            answer = await self._client.config_get("maxmemory-policy")
        except RedisError:
            return None  # CONFIG is disabled on some managed Redis services
        policy = text(answer.get("maxmemory-policy", "")) if answer else ""
        if policy and policy not in _SAFE_POLICIES:
            log.warning(
                "redis may evict cached balances; set maxmemory-policy noeviction",
                extra={"maxmemory_policy": policy},
            )
        return policy

    async def load_account(self, account_id: str) -> None:
        await self._loader.load_account(account_id)

    async def load_key(self, key_id: str, now_us: int) -> None:
        await self._loader.load_key(key_id, now_us)

    @property
    def reloads(self) -> int:
        return self._loader.reloads

    # Reading figures.

    async def account_snapshot(self, account_id: str) -> AccountSnapshot:
        fields = ["credits", "usage", "held", "purchased", "granted", "loaded"]
        try:
            for _ in range(_ATTEMPTS):
                values = await self._client.hmget(self.account_key(account_id), fields)
                if values[-1] is not None:
                    credits, usage, held, purchased, granted = (int(v or 0) for v in values[:-1])
                    return AccountSnapshot(credits, usage, held, purchased, granted)
                await self.load_account(account_id)
        except RedisError as exc:
            raise unavailable(exc) from exc
        raise unavailable()

    async def key_snapshot(self, key: KeyRecord, now_us: int) -> KeySnapshot:
        fields = ["total", "held"] + [_window_field(reset, now_us) for reset in LimitReset] + ["loaded"]
        try:
            for _ in range(_ATTEMPTS):
                values = await self._client.hmget(self.key_key(key.id), fields)
                if values[-1] is not None:
                    total, held, daily, weekly, monthly = (int(v or 0) for v in values[:-1])
                    return _key_snapshot(key, now_us, total, held, daily, weekly, monthly)
                await self.load_key(key.id, now_us)
        except RedisError as exc:
            raise unavailable(exc) from exc
        raise unavailable()

    # Holds.

    def carries(self, rider: Rider) -> bool:
        return rider.redis_url == self._url

    def _scripts_for(self, rider: Rider | None) -> tuple[Any, Any]:
        """The reserve and settle scripts, with the rider's hooks in them when there is one."""
        if rider is None:
            return self._reserve, self._settle
        pair = self._ridden.get(rider.library)
        if pair is None:
            pair = (
                script_for(self._client, self._runner, scripts.reserve_script(rider.library)),
                script_for(self._client, self._runner, scripts.settle_script(rider.library)),
            )
            self._ridden[rider.library] = pair
        return pair

    async def try_reserve(
        self, key: KeyRecord, amount_nanos: int, now_us: int, rider: Rider | None = None
    ) -> ReserveOutcome:
        hold_id = next(self._hold_ids)
        member = f"{self._process}-{hold_id}|{amount_nanos}|{key.id}"
        window = _window_field(key.limit_reset, now_us) if key.limit_reset else "total"
        keys = [
            self.account_key(key.account_id),
            self.key_key(key.id),
            self.holds_key(key.account_id),
            scripts.HOLD_INDEX,
        ]
        args: list[Any] = [
            PREFIX,
            now_us,
            amount_nanos,
            -1 if key.limit_nanos is None else key.limit_nanos,
            window,
            member,
            now_us + self._hold_ttl_us,
            *[_window_field(reset, now_us) for reset in LimitReset],
            key.account_id,
        ]
        if rider is not None:
            keys += rider.keys
            args += rider.args
        reserve = self._scripts_for(rider)[0]
        try:
            for _ in range(_ATTEMPTS):
                # Figures Redis lost make the script change nothing (nor the rider's), so a reload and a
                # second try count nothing twice.
                raw = await reserve(keys=keys, args=args)
                status = int(raw[0])
                if status == scripts.RIDER_REFUSED:
                    raise RiderRefused([int(v) for v in raw[1:]])
                if status == scripts.NOT_LOADED_ACCOUNT:
                    await self.load_account(key.account_id)
                elif status == scripts.NOT_LOADED_KEY:
                    await self.load_key(key.id, now_us)
                else:
                    break
            else:
                raise unavailable()
        except RedisError as exc:
            raise unavailable(exc) from exc
        ok, credits, usage, held, purchased, granted, total, daily, weekly, monthly, key_held = (
            int(v) for v in raw[:11]
        )
        account = AccountSnapshot(credits, usage, held, purchased, granted)
        figures = _key_snapshot(key, now_us, total, key_held, daily, weekly, monthly)
        if not ok:
            return ReserveOutcome(None, account, figures)
        hold = Hold(id=hold_id, account_id=key.account_id, key_id=key.id, amount_nanos=amount_nanos)
        self._open[hold_id] = (member, hold)
        self._opened_at[hold_id] = time.monotonic()
        return ReserveOutcome(hold, account, figures)

    def _finish(
        self,
        hold: Hold,
        cost_nanos: int,
        at_us: int,
        count_usage: bool,
        generation_id: str,
        rider: Rider | None,
        at_once: bool = False,
    ) -> Awaitable[Any]:
        """The script replacing the hold by `cost_nanos` (or releasing it), called; awaiting it waits for the reply.

        `at_once`: the call is written before this returns (the fast runner), so nothing the caller writes next
        can reach anyone before Redis has it.
        """
        opened = self._open.pop(hold.id, None)
        self._opened_at.pop(hold.id, None)
        if opened is None:
            if rider is None:
                return _done()
            # The hold is gone (it outlived MAX_HOLD_AGE_S): the rider's step still ends, the hold's does nothing.
            member, cost_nanos, count_usage = "", 0, False
        else:
            member = opened[0]
        key_id = hold.key_id or ""
        counted_id = generation_id or member
        keys = [
            self.account_key(hold.account_id),
            self.key_key(key_id),
            self.holds_key(hold.account_id),
            self.pending_account_key(hold.account_id),
            self.pending_key_key(key_id),
            f"{PREFIX}counted:a:{counted_id}",
            f"{PREFIX}counted:k:{counted_id}",
            scripts.finished_mark(member),
        ]
        args: list[Any] = [
            member,
            hold.amount_nanos,
            cost_nanos,
            *[_window_field(r, at_us) for r in LimitReset],
            "1" if count_usage else "0",
            counted_id,
            "1" if key_id else "0",
        ]
        if rider is not None:
            keys += rider.keys
            args += rider.args
        script = self._scripts_for(rider)[1]
        if at_once and isinstance(script, FastScript):
            return script.begin(keys=keys, args=args)
        return cast(Awaitable[Any], script(keys=keys, args=args))

    def begin_settle(
        self, hold: Hold, cost_nanos: int, at_us: int, generation_id: str = "", rider: Rider | None = None
    ) -> Awaitable[None]:
        """Write the settlement's script now; what is returned awaits its reply (the client need not wait).

        Redis has the script before the caller answers its client, so every read made after the client saw
        the answer (by any process) sees the cost in place of the hold.
        """
        reply = self._finish(hold, cost_nanos, at_us, True, generation_id, rider, at_once=True)
        return self._settled(reply, hold, cost_nanos, at_us)

    async def settle(
        self, hold: Hold, cost_nanos: int, at_us: int, generation_id: str = "", rider: Rider | None = None
    ) -> None:
        await self._settled(self._finish(hold, cost_nanos, at_us, True, generation_id, rider), hold, cost_nanos, at_us)

    async def _settled(self, reply: Awaitable[Any], hold: Hold, cost_nanos: int, at_us: int) -> None:
        try:
            await reply
        except RedisError as exc:
            # The ledger entry is still written: once Redis answers, the figures reload from it.
            log.error("could not settle a hold in redis", extra={"error": str(exc)[:300]})
            self._unsettled.append(LedgerEntry(hold.account_id, EntryKind.USAGE, cost_nanos, at_us, key_id=hold.key_id))

    async def release(self, hold: Hold, rider: Rider | None = None) -> None:
        try:
            await self._finish(hold, 0, 0, count_usage=False, generation_id="", rider=rider)
        except RedisError as exc:
            log.warning("could not release a hold in redis; it expires", extra={"error": str(exc)[:300]})

    async def renew(self, holds: Sequence[Hold], now_us: int) -> None:
        """Push the expiry of live holds out by one TTL (one round trip); re-adds a hold Redis lost."""
        live = [self._open[h.id] for h in holds if h.id in self._open]
        if not live:
            return
        expiry = now_us + self._hold_ttl_us
        async with self._client.pipeline(transaction=False) as pipe:
            for member, hold in live:
                key_id = hold.key_id or ""
                await self._renew(
                    keys=[
                        self.account_key(hold.account_id),
                        self.key_key(key_id),
                        self.holds_key(hold.account_id),
                        scripts.HOLD_INDEX,
                        scripts.finished_mark(member),
                    ],
                    args=[member, hold.amount_nanos, expiry, hold.account_id, "1" if key_id else "0"],
                    client=pipe,
                )
            await pipe.execute()

    async def sweep(self, now_us: int) -> int:
        """Release every account's expired holds; returns how many were released."""
        released = 0
        while True:
            count = int(await self._sweep(keys=[scripts.HOLD_INDEX], args=[PREFIX, now_us, _SWEEP_BATCH]))
            released += count
            if count < _SWEEP_BATCH:
                return released

    def _renewable(self) -> list[Hold]:
        """Open holds to renew; one older than MAX_HOLD_AGE_S was lost by its request (a bug): let it expire."""
        too_old = time.monotonic() - MAX_HOLD_AGE_S
        for hold_id in [h for h, at in self._opened_at.items() if at < too_old]:
            self._opened_at.pop(hold_id, None)
            _member, hold = self._open.pop(hold_id)
            log.error("a hold outlived its request; it is left to expire", extra={"account_id": hold.account_id})
        return [hold for _member, hold in self._open.values()]

    async def maintain(self) -> None:
        """Background upkeep: sweep expired holds (every 0.5 s) and renew this process's (every TTL/3)."""
        renew_every_s = max(0.1, self.hold_ttl_s / 3)
        sweep_every_s = min(_SWEEP_INTERVAL_S, renew_every_s)
        last_renew = time.monotonic()
        while True:
            await asyncio.sleep(sweep_every_s)
            now_us = int(time.time() * 1_000_000)
            try:
                if self._unsettled:
                    unsettled, self._unsettled = self._unsettled, []
                    if not await self._forget_now(unsettled):
                        self._unsettled += unsettled
                if time.monotonic() - last_renew >= renew_every_s:
                    last_renew = time.monotonic()
                    await self.renew(self._renewable(), now_us)
                await self.sweep(now_us)
            except RedisError as exc:
                log.warning("hold upkeep failed, will retry", extra={"error": str(exc)[:300]})

    async def forget(self, entries: Sequence[LedgerEntry]) -> None:
        """Usage committed after its Redis step (a slow or failed commit, a replayed spool): had Redis lost
        its figures in between, a reload would have missed it, so the figures concerned reload now."""
        if not await self._forget_now(entries):
            self._unsettled += entries  # retried by the upkeep loop

    async def _forget_now(self, entries: Sequence[LedgerEntry]) -> bool:
        hashes = {self.account_key(e.account_id) for e in entries}
        hashes |= {self.key_key(e.key_id) for e in entries if e.key_id}
        if not hashes:
            return True
        try:
            await self._forget(keys=sorted(hashes), args=[])
        except RedisError as exc:
            log.warning("could not drop figures to reload, will retry", extra={"error": str(exc)[:300]})
            return False
        return True

    # Credit entries.

    async def _apply(self, entry: LedgerEntry) -> None:
        if entry.kind is EntryKind.USAGE or entry.id is None:
            return  # usage reaches Redis through the settling process's own script
        purchased = entry.amount_nanos if entry.kind in (EntryKind.PURCHASE, EntryKind.REFUND) else 0
        granted = entry.amount_nanos if entry.kind is EntryKind.GRANT else 0
        await self._apply_once(
            keys=[
                self.account_key(entry.account_id),
                f"{PREFIX}applied:{entry.id}",
                self.pending_account_key(entry.account_id),
            ],
            args=[entry.id, entry.amount_nanos, purchased, granted],
        )

    async def apply_local(self, entry: LedgerEntry) -> None:
        """Count a credit entry in Redis; while Redis is away it is kept and retried by the poller."""
        self._unapplied.append(entry)
        await self._apply_pending()

    async def _apply_pending(self) -> None:
        while self._unapplied:
            entry = self._unapplied[0]
            try:
                await self._apply(entry)  # applying twice is harmless: the script applies an entry once
            except RedisError:
                return
            if self._unapplied and self._unapplied[0] is entry:  # a concurrent caller may have moved on
                self._unapplied.pop(0)

    async def apply_external(self, entries: Iterable[LedgerEntry], new_watermark: int) -> None:
        self._unapplied.extend(entries)
        await self._apply_pending()
        if not self._unapplied:
            self.watermark = max(self.watermark, new_watermark)

    @property
    def open_hold_count(self) -> int:
        return len(self._open)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.aclose()
        with contextlib.suppress(RedisError):
            await self._client.aclose()
