"""SQL access to the ledger of record: append entries and generations, derive totals from entries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.auth.records import LimitReset
from tollway.db import tables
from tollway.db.upsert import insert_ignoring_duplicates
from tollway.ledger.records import AttemptRecord, EntryKind, GenerationRecord, LedgerEntry
from tollway.ledger.sink import ENTRY_COLUMNS, GENERATION_COLUMNS, BatchSink, Row
from tollway.ledger.windows import window_start_us

_E = tables.ledger_entries
_RECENT_SCAN = 20_000  # newest entries of an account a reload looks through for recent ones
_G = tables.generations


@dataclass(frozen=True, slots=True)
class AccountTotals:
    credits_nanos: int
    usage_nanos: int
    purchased_nanos: int
    granted_nanos: int


@dataclass(frozen=True, slots=True)
class KeyUsageTotals:
    total_nanos: int
    by_window: dict[LimitReset, tuple[int, int]]  # reset -> (window start, nanos used in it)


@dataclass(frozen=True, slots=True)
class AccountLoad:
    """An account's sums, read in one statement with which parked Redis items they already include."""

    totals: AccountTotals
    included_generation_ids: frozenset[str]
    included_entry_ids: frozenset[int]
    recent_credit_ids: list[int]
    recent_generation_ids: list[str]  # usage entries settled lately (their Redis step may still be coming)


@dataclass(frozen=True, slots=True)
class KeyLoad:
    totals: KeyUsageTotals
    included_generation_ids: frozenset[str]
    recent_generation_ids: list[str]


def _tagged(tag: int, numbers: list[Any], text: Any = None) -> Any:
    """One branch of a UNION ALL: a tag, four integers and one text column."""
    padded = [cast(n, BigInteger) for n in numbers] + [cast(literal(0), BigInteger)] * (4 - len(numbers))
    return select(cast(literal(tag), BigInteger), *padded, cast(text if text is not None else literal(None), String))


def entry_row(entry: LedgerEntry, origin: str | None) -> dict[str, Any]:
    return {
        "account_id": entry.account_id,
        "kind": entry.kind.value,
        "amount_nanos": entry.amount_nanos,
        "key_id": entry.key_id,
        "generation_id": entry.generation_id,
        "reference": entry.reference,
        "reason": entry.reason,
        "origin": origin,
        "created_at_us": entry.created_at_us,
    }


def generation_row(record: GenerationRecord) -> dict[str, Any]:
    attempts = [
        {
            "provider_name": a.provider_name,
            "status": a.status,
            "latency": a.latency_ms,
            "model": a.model,
            "endpoint_id": a.endpoint_id,
        }
        for a in record.provider_responses
    ]
    return {
        "id": record.id,
        "account_id": record.account_id,
        "key_id": record.key_id,
        "model": record.model,
        "provider_name": record.provider_name,
        "upstream_id": record.upstream_id,
        "created_at_us": record.created_at_us,
        "tokens_prompt": record.tokens_prompt,
        "tokens_completion": record.tokens_completion,
        "tokens_reasoning": record.tokens_reasoning,
        "tokens_cached": record.tokens_cached,
        "cost_nanos": record.cost_nanos,
        "latency_ms": record.latency_ms,
        "generation_time_ms": record.generation_time_ms,
        "streamed": record.streamed,
        "cancelled": record.cancelled,
        "finish_reason": record.finish_reason,
        "native_finish_reason": record.native_finish_reason,
        "status": record.status,
        "api_type": record.api_type,
        "external_user": record.external_user,
        "user_agent": record.user_agent,
        "http_referer": record.http_referer,
        "max_tokens_capped": record.max_tokens_capped,
        "provider_responses": orjson.dumps(attempts).decode(),
        "tokens_cache_write": record.tokens_cache_write,
        "tokens_cache_write_1h": record.tokens_cache_write_1h,
        "images": record.images,
        "web_searches": record.web_searches,
        "usage_estimated": record.usage_estimated,
        "hold_nanos": record.hold_nanos,
        "hold_overrun_nanos": record.hold_overrun_nanos,
        "cost_details": orjson.dumps(record.cost_details).decode() if record.cost_details else None,
        "session_id": record.session_id,
        "preset_id": record.preset_id,
    }


def generation_from_row(row: Any) -> GenerationRecord:
    attempts = [
        AttemptRecord(
            provider_name=item["provider_name"],
            status=item["status"],
            latency_ms=item["latency"],
            model=item["model"],
            endpoint_id=item["endpoint_id"],
        )
        for item in orjson.loads(row.provider_responses or "[]")
    ]
    return GenerationRecord(
        id=row.id,
        account_id=row.account_id,
        key_id=row.key_id,
        model=row.model,
        provider_name=row.provider_name,
        created_at_us=row.created_at_us,
        upstream_id=row.upstream_id,
        tokens_prompt=row.tokens_prompt,
        tokens_completion=row.tokens_completion,
        tokens_reasoning=row.tokens_reasoning,
        tokens_cached=row.tokens_cached,
        cost_nanos=row.cost_nanos,
        latency_ms=row.latency_ms,
        generation_time_ms=row.generation_time_ms,
        streamed=row.streamed,
        cancelled=row.cancelled,
        finish_reason=row.finish_reason,
        native_finish_reason=row.native_finish_reason,
        status=row.status,
        api_type=row.api_type,
        external_user=row.external_user,
        user_agent=row.user_agent,
        http_referer=row.http_referer,
        max_tokens_capped=row.max_tokens_capped,
        provider_responses=attempts,
        tokens_cache_write=row.tokens_cache_write or 0,
        tokens_cache_write_1h=row.tokens_cache_write_1h or 0,
        images=row.images or 0,
        web_searches=row.web_searches or 0,
        usage_estimated=bool(row.usage_estimated),
        hold_nanos=row.hold_nanos or 0,
        hold_overrun_nanos=row.hold_overrun_nanos or 0,
        cost_details=orjson.loads(row.cost_details) if row.cost_details else {},
        session_id=getattr(row, "session_id", None),
        preset_id=getattr(row, "preset_id", None),
    )


def entry_from_row(row: Any) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        account_id=row.account_id,
        kind=EntryKind(row.kind),
        amount_nanos=row.amount_nanos,
        created_at_us=row.created_at_us,
        key_id=row.key_id,
        generation_id=row.generation_id,
        reference=row.reference,
        reason=row.reason,
    )


def _visible_at(up_to_id: int, own_origin: str | None) -> ColumnElement[bool]:
    """Entries a loader counts: all up to the poll watermark, and every entry of its own process.

    Entries of other writers above the watermark are left to the poller; a process's own entries
    are never polled, so a loader must count them all.
    """
    if own_origin is None:
        return _E.c.id <= up_to_id
    return or_(_E.c.id <= up_to_id, _E.c.origin == own_origin)


def _complete(values: dict[str, Any], table: Any) -> dict[str, Any]:
    row = {}
    for column in table.columns:
        if column.name in values:
            row[column.name] = values[column.name]
        elif column.name != "id":
            default = column.default.arg if column.default is not None and column.default.is_scalar else None
            row[column.name] = default
    return row


def _as_row(values: dict[str, Any], columns: tuple[str, ...]) -> Row:
    return tuple(values.get(name) for name in columns)  # a row spooled before a column existed has none


class LedgerStore:
    def __init__(self, engine: AsyncEngine, sink: BatchSink | None = None) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._sink = sink

    async def append(self, entry: LedgerEntry, origin: str | None) -> int | None:
        """Append one entry and return its id; None when its (kind, reference) was already recorded."""
        statement = insert_ignoring_duplicates(_E, self._dialect).values(**entry_row(entry, origin)).returning(_E.c.id)
        async with self._engine.begin() as connection:
            inserted = (await connection.execute(statement)).scalar()
        return None if inserted is None else int(inserted)

    async def write_batch(
        self, entries: Sequence[LedgerEntry], generations: Sequence[GenerationRecord], origin: str
    ) -> None:
        """One transaction for a batch; duplicates (a retried batch) are skipped, never doubled."""
        if self._sink is not None:
            await self._sink.write(
                [_as_row(entry_row(e, origin), ENTRY_COLUMNS) for e in entries],
                [_as_row(generation_row(g), GENERATION_COLUMNS) for g in generations],
            )
            return
        async with self._engine.begin() as connection:
            if generations:
                await connection.execute(
                    insert_ignoring_duplicates(_G, self._dialect), [generation_row(g) for g in generations]
                )
            if entries:
                await connection.execute(
                    insert_ignoring_duplicates(_E, self._dialect), [entry_row(e, origin) for e in entries]
                )

    async def write_rows(self, entries: Sequence[dict[str, Any]], generations: Sequence[dict[str, Any]]) -> None:
        """Write rows kept outside the database (the spool) as they were; duplicates are skipped.

        A row spooled by an older version lacks the columns added since: they take their defaults.
        """
        entries = [_complete(row, _E) for row in entries]
        generations = [_complete(row, _G) for row in generations]
        if self._sink is not None:
            await self._sink.write(
                [_as_row(e, ENTRY_COLUMNS) for e in entries], [_as_row(g, GENERATION_COLUMNS) for g in generations]
            )
            return
        async with self._engine.begin() as connection:
            if generations:
                await connection.execute(insert_ignoring_duplicates(_G, self._dialect), list(generations))
            if entries:
                await connection.execute(insert_ignoring_duplicates(_E, self._dialect), list(entries))

    async def identity(self) -> str:
        """A random name stored in the database once: its spool files carry it, whatever URL reaches it."""
        settings_store = tables.settings_store
        async with self._engine.begin() as connection:
            await connection.execute(
                insert_ignoring_duplicates(settings_store, self._dialect).values(
                    name="ledger_id", value=uuid.uuid4().hex[:16]
                )
            )
            value = await connection.scalar(select(settings_store.c.value).where(settings_store.c.name == "ledger_id"))
        return str(value)

    async def existing_generation_ids(self, generation_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        async with self._engine.connect() as connection:
            for start in range(0, len(generation_ids), 500):
                chunk = list(generation_ids[start : start + 500])
                rows = await connection.execute(select(_G.c.id).where(_G.c.id.in_(chunk)))
                found.update(str(row[0]) for row in rows)
        return found

    def changed_elsewhere(self) -> bool:
        """Cheap hint for the poller; True when unsure."""
        return self._sink is None or self._sink.changed_elsewhere()

    async def checkpoint(self) -> None:
        if self._sink is not None:
            await self._sink.checkpoint()

    async def max_entry_id(self) -> int:
        async with self._engine.connect() as connection:
            value = await connection.scalar(select(func.max(_E.c.id)))
        return int(value or 0)

    async def changes_after(
        self, after_id: int, before_us: int | None, exclude_origin: str, include_usage: bool
    ) -> tuple[int, list[LedgerEntry]]:
        """The poll's two reads on one pooled connection (one checkout and pre-ping instead of two): the
        watermark `highest_id_created_before` gives, then `entries_after`, in that order."""
        async with self._engine.connect() as connection:
            watermark = await connection.scalar(self._highest_id_query(after_id, before_us))
            rows = (await connection.execute(self._entries_query(after_id, exclude_origin, 5000, include_usage))).all()
        return int(watermark or after_id), [entry_from_row(row) for row in rows]

    @staticmethod
    def _entries_query(after_id: int, exclude_origin: str, limit: int, include_usage: bool) -> Any:
        query = (
            select(_E)
            .where(_E.c.id > after_id)
            .where(or_(_E.c.origin.is_(None), _E.c.origin != exclude_origin))
            .order_by(_E.c.id)
            .limit(limit)
        )
        return query if include_usage else query.where(_E.c.kind != EntryKind.USAGE.value)

    @staticmethod
    def _highest_id_query(after_id: int, before_us: int | None) -> Any:
        query = select(func.max(_E.c.id)).where(_E.c.id > after_id)
        return query if before_us is None else query.where(_E.c.created_at_us < before_us)

    async def entries_after(
        self, after_id: int, exclude_origin: str, limit: int = 5000, include_usage: bool = True
    ) -> list[LedgerEntry]:
        """Entries written by others (CLI, admin, other processes) above a watermark, oldest first.

        Without usage, other processes' settlements stay in the database: on PostgreSQL the watermark
        trails by seconds, and re-reading every settlement of that window on each poll cost more CPU
        than the requests of a second worker.
        """
        async with self._engine.connect() as connection:
            rows = (await connection.execute(self._entries_query(after_id, exclude_origin, limit, include_usage))).all()
        return [entry_from_row(row) for row in rows]

    async def highest_id_created_before(self, after_id: int, before_us: int | None) -> int:
        """The id the poll watermark can safely move to (all rows at or below it are committed)."""
        async with self._engine.connect() as connection:
            value = await connection.scalar(self._highest_id_query(after_id, before_us))
        return int(value or after_id)

    async def account_totals(
        self, account_id: str, up_to_id: int | None = None, own_origin: str | None = None
    ) -> AccountTotals:
        """Sums of an account's entries; with `up_to_id`, only those at or below it plus the caller's own."""
        usage = _E.c.kind == EntryKind.USAGE.value
        conditions = [_E.c.account_id == account_id]
        if up_to_id is not None:
            conditions.append(_visible_at(up_to_id, own_origin))
        query = select(
            func.coalesce(func.sum(case((usage, 0), else_=_E.c.amount_nanos)), 0),
            func.coalesce(func.sum(case((usage, _E.c.amount_nanos), else_=0)), 0),
            func.coalesce(
                func.sum(
                    case(
                        (
                            _E.c.kind.in_([EntryKind.PURCHASE.value, EntryKind.REFUND.value]),
                            _E.c.amount_nanos,
                        ),
                        else_=0,
                    )
                ),
                0,
            ),
            func.coalesce(func.sum(case((_E.c.kind == EntryKind.GRANT.value, _E.c.amount_nanos), else_=0)), 0),
        ).where(and_(*conditions))
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).one()
        return AccountTotals(
            credits_nanos=int(row[0]),
            usage_nanos=int(row[1]),
            purchased_nanos=int(row[2]),
            granted_nanos=int(row[3]),
        )

    def _account_sums(self) -> list[Any]:
        usage = _E.c.kind == EntryKind.USAGE.value
        purchases = _E.c.kind.in_([EntryKind.PURCHASE.value, EntryKind.REFUND.value])
        return [
            func.coalesce(func.sum(case((usage, 0), else_=_E.c.amount_nanos)), 0),
            func.coalesce(func.sum(case((usage, _E.c.amount_nanos), else_=0)), 0),
            func.coalesce(func.sum(case((purchases, _E.c.amount_nanos), else_=0)), 0),
            func.coalesce(func.sum(case((_E.c.kind == EntryKind.GRANT.value, _E.c.amount_nanos), else_=0)), 0),
        ]

    async def account_load(
        self,
        account_id: str,
        parked_generation_ids: list[str],
        parked_entry_ids: list[int],
        recent_credits_since_us: int,
        recent_usage_since_us: int,
    ) -> AccountLoad:
        """Sums for (re)loading a cached account, with the parked items and recent credits they include.

        One statement, so one snapshot: an item is either in the sums and in the answer, or in neither.
        """
        mine = _E.c.account_id == account_id
        parts = [_tagged(0, self._account_sums()).where(mine)]
        if parked_generation_ids:
            parts.append(_tagged(1, [], _E.c.generation_id).where(mine, _E.c.generation_id.in_(parked_generation_ids)))
        if parked_entry_ids:
            parts.append(_tagged(2, [_E.c.id]).where(mine, _E.c.id.in_(parked_entry_ids)))
        # The account's latest entries (bounded, through its index), for the ones settled or credited lately.
        latest = (
            select(_E.c.id, _E.c.kind, _E.c.generation_id, _E.c.created_at_us)
            .where(mine)
            .order_by(_E.c.id.desc())
            .limit(_RECENT_SCAN)
            .subquery()
        )
        is_usage = latest.c.kind == EntryKind.USAGE.value
        credits = and_(~is_usage, latest.c.created_at_us >= recent_credits_since_us)
        parts.append(_tagged(3, [latest.c.id]).select_from(latest).where(credits))
        usage = and_(is_usage, latest.c.created_at_us >= recent_usage_since_us)
        parts.append(_tagged(4, [], latest.c.generation_id).select_from(latest).where(usage))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(union_all(*parts))).all()
        totals = next(r for r in rows if r[0] == 0)
        return AccountLoad(
            totals=AccountTotals(int(totals[1]), int(totals[2]), int(totals[3]), int(totals[4])),
            included_generation_ids=frozenset(str(r[5]) for r in rows if r[0] == 1),
            included_entry_ids=frozenset(int(r[1]) for r in rows if r[0] == 2),
            recent_credit_ids=[int(r[1]) for r in rows if r[0] == 3],
            recent_generation_ids=[str(r[5]) for r in rows if r[0] == 4],
        )

    async def key_load(
        self, key_id: str, now_us: int, parked_generation_ids: list[str], recent_usage_since_us: int
    ) -> KeyLoad:
        """A key's usage sums for (re)loading it, with the parked settlements they include (one statement)."""
        starts = {reset: window_start_us(reset, now_us) for reset in LimitReset}
        mine = and_(_E.c.key_id == key_id, _E.c.kind == EntryKind.USAGE.value)
        sums = [func.coalesce(func.sum(_E.c.amount_nanos), 0)]
        sums += [
            func.coalesce(func.sum(case((_E.c.created_at_us >= start, _E.c.amount_nanos), else_=0)), 0)
            for start in starts.values()
        ]
        parts = [_tagged(0, sums).where(mine)]
        if parked_generation_ids:
            parts.append(_tagged(1, [], _E.c.generation_id).where(mine, _E.c.generation_id.in_(parked_generation_ids)))
        parts.append(_tagged(4, [], _E.c.generation_id).where(mine, _E.c.created_at_us >= recent_usage_since_us))
        async with self._engine.connect() as connection:
            rows = (await connection.execute(union_all(*parts))).all()
        row = next(r for r in rows if r[0] == 0)
        by_window = {reset: (start, int(row[i + 2])) for i, (reset, start) in enumerate(starts.items())}
        return KeyLoad(
            KeyUsageTotals(total_nanos=int(row[1]), by_window=by_window),
            frozenset(str(r[5]) for r in rows if r[0] == 1),
            [str(r[5]) for r in rows if r[0] == 4],
        )

    async def key_usage(
        self, key_id: str, now_us: int, up_to_id: int | None = None, own_origin: str | None = None
    ) -> KeyUsageTotals:
        starts = {reset: window_start_us(reset, now_us) for reset in LimitReset}
        conditions = [_E.c.key_id == key_id, _E.c.kind == EntryKind.USAGE.value]
        if up_to_id is not None:
            conditions.append(_visible_at(up_to_id, own_origin))
        columns = [func.coalesce(func.sum(_E.c.amount_nanos), 0)]
        columns += [
            func.coalesce(func.sum(case((_E.c.created_at_us >= start, _E.c.amount_nanos), else_=0)), 0)
            for start in starts.values()
        ]
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(*columns).where(and_(*conditions)))).one()
        by_window = {reset: (start, int(row[i + 1])) for i, (reset, start) in enumerate(starts.items())}
        return KeyUsageTotals(total_nanos=int(row[0]), by_window=by_window)

    async def generation(self, generation_id: str) -> GenerationRecord | None:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_G).where(_G.c.id == generation_id))).first()
        return None if row is None else generation_from_row(row)

    async def entries_for_account(self, account_id: str, limit: int = 100) -> list[LedgerEntry]:
        query = select(_E).where(_E.c.account_id == account_id).order_by(_E.c.id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [entry_from_row(row) for row in rows]
