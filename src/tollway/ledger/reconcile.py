"""`tollway reconcile`: compare every cached figure with the ledger (and the spool); `--fix` repairs.

Checks, in order:
- the spool: settlements a process answered but the database never confirmed (written with --fix;
  those of dead processes are also replayed by the next gateway start);
- the ledger itself: every billed generation has exactly its usage entry;
- Redis (when used): that it still holds figures at all (after a flush or a restart it holds none:
  gateways reload them on next use, --fix reloads them now), and for every loaded account and key the
  cached credits, usage, window usage and held amounts against the ledger plus the spool and the
  live holds. Expired holds are released first, as the gateways' sweepers do.

Gateways keep settling while this runs, so a difference is only reported when it persists over a
few reads. `--fix` repairs while they run: held becomes the sum of the live holds and the other
figures are reloaded from the ledger by the same atomic loader the gateways use.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.records import LimitReset
from tollway.db import tables
from tollway.ledger import redis_scripts as scripts
from tollway.ledger.records import EntryKind
from tollway.ledger.redis_book import RedisBook
from tollway.ledger.spool import SpooledSettlement, replay
from tollway.ledger.store import LedgerStore
from tollway.ledger.windows import window_start_us
from tollway.money import nanos_to_usd

_E = tables.ledger_entries
_G = tables.generations
_READS = 4
_READ_PAUSE_S = 0.25
_ACCOUNT_FIELDS = ("credits", "usage", "purchased", "granted", "held")


@dataclass
class ReconcileReport:
    accounts_checked: int = 0
    keys_checked: int = 0
    expired_holds_released: int = 0
    spool_replayed: int = 0
    reloaded: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    # Settlements that cost more than their hold, per account: not a difference between cache and ledger
    # (the ledger billed what the upstream reported), but how far a balance could dip below zero.
    hold_overruns: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "accounts_checked": self.accounts_checked,
            "keys_checked": self.keys_checked,
            "expired_holds_released": self.expired_holds_released,
            "spool_replayed": self.spool_replayed,
            "reloaded": self.reloaded,
            "mismatches": self.mismatches,
            "hold_overruns": self.hold_overruns,
        }


async def _generation_mismatches(engine: AsyncEngine) -> list[dict[str, Any]]:
    usage = select(_E.c.generation_id, _E.c.amount_nanos).where(_E.c.kind == EntryKind.USAGE.value).subquery()
    query = (
        select(_G.c.id, _G.c.account_id, _G.c.cost_nanos, usage.c.amount_nanos)
        .select_from(_G.outerjoin(usage, usage.c.generation_id == _G.c.id))
        .where(func.coalesce(usage.c.amount_nanos, 0) != _G.c.cost_nanos)
        .limit(100)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        {
            "kind": "generation_without_matching_usage",
            "generation_id": r[0],
            "account_id": r[1],
            "cost": nanos_to_usd(r[2]),
            "usage_entry": None if r[3] is None else nanos_to_usd(r[3]),
        }
        for r in rows
    ]


async def _hold_overruns(engine: AsyncEngine) -> list[dict[str, Any]]:
    query = (
        select(_G.c.account_id, func.count(), func.sum(_G.c.hold_overrun_nanos), func.max(_G.c.created_at_us))
        .where(_G.c.hold_overrun_nanos > 0)
        .group_by(_G.c.account_id)
        .order_by(func.sum(_G.c.hold_overrun_nanos).desc())
        .limit(100)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [
        {"account_id": r[0], "generations": int(r[1]), "overrun": nanos_to_usd(int(r[2])), "last_at_us": int(r[3])}
        for r in rows
    ]


async def _check_spool(
    spool_dir: Path | None, store: LedgerStore, fix: bool, report: ReconcileReport
) -> list[SpooledSettlement]:
    """Spooled settlements missing from the ledger; with fix, written (they then count as ledger)."""
    if spool_dir is None:
        return []
    found = await replay(spool_dir, store, write_dead=fix, write_live=fix)
    missing = found.missing_in_dead + found.missing_in_live
    report.spool_replayed = found.written
    for item in found.refused:
        report.mismatches.append(
            {
                "kind": "spooled_settlement_refused",
                "generation_id": item.generation.get("id"),
                "account_id": item.generation.get("account_id"),
                "cost": nanos_to_usd(int(item.generation.get("cost_nanos") or 0)),
                "detail": f"the database refuses this answered settlement; it is kept in {spool_dir}/*.refused "
                "until an operator records it (e.g. as an adjustment) and deletes that file",
            }
        )
    refused_ids = {item.generation.get("id") for item in found.refused}
    for item in missing:
        report.mismatches.append(
            {
                "kind": "spooled_settlement_not_in_ledger",
                "generation_id": item.generation["id"],
                "account_id": item.generation["account_id"],
                "cost": nanos_to_usd(int(item.generation["cost_nanos"])),
                "fixed": fix and item.generation["id"] not in refused_ids,
            }
        )
    return [] if fix else missing


def _differences(cached: dict[str, int], expected: dict[str, int]) -> dict[str, Any] | None:
    if cached == expected:
        return None
    return {
        "cached": {name: nanos_to_usd(value) for name, value in cached.items()},
        "ledger": {name: nanos_to_usd(value) for name, value in expected.items()},
    }


class _RedisCheck:
    def __init__(self, client: redis.Redis, book: RedisBook, store: LedgerStore, now_us: int) -> None:
        self.client = client
        self.book = book
        self.store = store
        self.now_us = now_us
        self.spooled_usage: dict[str, int] = defaultdict(int)  # account or key id -> usage not in the ledger
        self.spooled_key_windows: dict[tuple[str, str], int] = defaultdict(int)

    def add_spooled(self, missing: list[SpooledSettlement]) -> None:
        for item in missing:
            if item.entry is None:
                continue
            amount = int(item.entry["amount_nanos"])
            self.spooled_usage["a:" + item.entry["account_id"]] += amount
            if item.entry.get("key_id"):
                key_id = item.entry["key_id"]
                self.spooled_usage["k:" + key_id] += amount
                for reset in LimitReset:
                    start = window_start_us(reset, int(item.entry["created_at_us"]))
                    self.spooled_key_windows[(key_id, f"{reset.value[0]}:{start}")] += amount

    async def live_holds(self, account_id: str) -> tuple[int, dict[str, int]]:
        members: list[bytes] = await self.client.zrange(RedisBook.holds_key(account_id), 0, -1)  # type: ignore[assignment]
        total, by_key = 0, defaultdict[str, int](int)
        for member in members:
            _hold, amount, key_id = bytes(member).decode().split("|", 2)
            total += int(amount)
            by_key[key_id] += int(amount)
        return total, by_key

    async def account_difference(self, account_id: str) -> dict[str, Any] | None:
        values = await self.client.hmget(RedisBook.account_key(account_id), [*_ACCOUNT_FIELDS, "loaded"])
        if values[-1] is None:
            return None  # not cached: it loads from the ledger on first use
        cached = dict(zip(_ACCOUNT_FIELDS, (int(v or 0) for v in values[:-1]), strict=True))
        totals = await self.store.account_totals(account_id)
        held, _by_key = await self.live_holds(account_id)
        expected = {
            "credits": totals.credits_nanos,
            "usage": totals.usage_nanos + self.spooled_usage.get("a:" + account_id, 0),
            "purchased": totals.purchased_nanos,
            "granted": totals.granted_nanos,
            "held": held,
        }
        return _differences(cached, expected)

    async def key_difference(self, key_id: str, account_id: str) -> dict[str, Any] | None:
        usage = await self.store.key_usage(key_id, self.now_us)
        windows = [f"{reset.value[0]}:{start}" for reset, (start, _used) in usage.by_window.items()]
        values = await self.client.hmget(RedisBook.key_key(key_id), ["total", *windows, "held", "loaded"])
        if values[-1] is None:
            return None
        names = ["total", *windows, "held"]
        cached = dict(zip(names, (int(v or 0) for v in values[:-1]), strict=True))
        _held, by_key = await self.live_holds(account_id)
        expected = {"total": usage.total_nanos + self.spooled_usage.get("k:" + key_id, 0)}
        for name, (_start, used) in zip(windows, usage.by_window.values(), strict=True):
            expected[name] = used + self.spooled_key_windows.get((key_id, name), 0)
        expected["held"] = by_key.get(key_id, 0)
        return _differences(cached, expected)


async def _persistent(check: Any, *args: str) -> dict[str, Any] | None:
    """A difference seen on every one of a few reads (gateways settle while we look)."""
    difference = None
    for attempt in range(_READS):
        difference = await check(*args)
        if difference is None:
            return None
        if attempt + 1 < _READS:
            await asyncio.sleep(_READ_PAUSE_S)
    return difference


async def _repair(check: _RedisCheck, account_id: str, unload_account: bool, keys: dict[str, bool]) -> None:
    repair = check.client.register_script(scripts.REPAIR)
    args: list[Any] = [scripts.PREFIX, check.now_us, "1" if unload_account else "0"]
    for key_id, unload in keys.items():
        args += [key_id, "1" if unload else "0"]
    await repair(keys=[RedisBook.account_key(account_id), RedisBook.holds_key(account_id)], args=args)
    await check.book.load_account(account_id)
    for key_id in keys:
        await check.book.load_key(key_id, check.now_us)


async def _entries_exist(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return (await connection.scalar(select(_E.c.id).limit(1))) is not None


async def _check_redis(
    engine: AsyncEngine,
    redis_url: str,
    now_us: int,
    fix: bool,
    spooled: list[SpooledSettlement],
    report: ReconcileReport,
) -> None:
    store = LedgerStore(engine)
    async with engine.connect() as connection:
        account_ids = [row[0] for row in (await connection.execute(select(tables.accounts.c.id))).all()]
        key_rows = (await connection.execute(select(tables.api_keys.c.id, tables.api_keys.c.account_id))).all()
    keys_of: dict[str, list[str]] = defaultdict(list)
    for key_id, owner in key_rows:
        keys_of[owner].append(key_id)
    report.accounts_checked = len(account_ids)
    report.keys_checked = len(key_rows)
    client: redis.Redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    book = RedisBook(store, "reconcile", redis_url, hold_ttl_s=0)
    check = _RedisCheck(client, book, store, now_us)
    check.add_spooled(spooled)
    try:
        report.expired_holds_released = await book.sweep(now_us)
        lost = not await client.exists(scripts.EPOCH) and await _entries_exist(engine)
        if lost:
            report.mismatches.append(
                {
                    "kind": "redis_figures_missing",
                    "detail": "Redis holds no cached figures (flushed, restarted or evicted); gateways reload "
                    "each account from the ledger on its next request, and --fix reloads them all now.",
                    "fixed": fix,
                }
            )
        for account_id in account_ids:
            keys = keys_of.get(account_id, [])
            account_difference = await _persistent(check.account_difference, account_id)
            key_differences = {k: await _persistent(check.key_difference, k, account_id) for k in keys}
            for key_id, difference in key_differences.items():
                if difference is not None:
                    report.mismatches.append(
                        {"kind": "cached_key_figures_differ", "key_id": key_id, "fixed": fix, **difference}
                    )
            if account_difference is not None:
                report.mismatches.append(
                    {"kind": "cached_figures_differ", "account_id": account_id, "fixed": fix, **account_difference}
                )
            wrong = account_difference is not None or any(d is not None for d in key_differences.values())
            if fix and (wrong or lost):
                before = book.reloads
                await _repair(
                    check,
                    account_id,
                    account_difference is not None,
                    {k: d is not None for k, d in key_differences.items()},
                )
                report.reloaded += book.reloads - before
    finally:
        await book.close()
        await client.aclose()


async def reconcile(
    engine: AsyncEngine,
    redis_url: str | None,
    now_us: int,
    fix: bool,
    spool_dir: Path | None = None,
) -> ReconcileReport:
    report = ReconcileReport()
    store = LedgerStore(engine)
    spooled = await _check_spool(spool_dir, store, fix, report)
    report.mismatches += await _generation_mismatches(engine)
    report.hold_overruns = await _hold_overruns(engine)
    if redis_url is None:
        async with engine.connect() as connection:
            report.accounts_checked = int(
                await connection.scalar(select(func.count()).select_from(tables.accounts)) or 0
            )
        return report
    try:
        await _check_redis(engine, redis_url, now_us, fix, spooled, report)
    except RedisError as exc:
        report.mismatches.append(
            {
                "kind": "redis_unreachable",
                "detail": f"Redis at TOLLWAY_REDIS_URL did not answer ({exc}); its figures were not checked.",
            }
        )
    return report
