"""The hot-path view of money: per-account and per-key figures plus in-flight holds, kept in memory.

Figures start from the ledger (sums of entries up to a watermark) and then move with every local
hold, settlement and release, and with entries other writers append (polled by `LedgerCatchUp`).
Check-and-reserve runs without an await between the check and the increment, so concurrent
requests in this process can never reserve money that is not there.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from tollway.auth.records import KeyRecord, LimitReset
from tollway.ledger.records import EntryKind, LedgerEntry
from tollway.ledger.store import LedgerStore
from tollway.ledger.windows import next_reset_us, window_start_us


@dataclass(slots=True)
class AccountState:
    credits_nanos: int
    usage_nanos: int
    purchased_nanos: int
    granted_nanos: int
    held_nanos: int = 0


@dataclass(slots=True)
class KeyState:
    total_nanos: int
    by_window: dict[tuple[LimitReset, int], int] = field(default_factory=dict)
    held_nanos: int = 0

    def add_usage(self, amount_nanos: int, at_us: int) -> None:
        self.total_nanos += amount_nanos
        for reset in LimitReset:
            window = (reset, window_start_us(reset, at_us))
            self.by_window[window] = self.by_window.get(window, 0) + amount_nanos
        if len(self.by_window) > 12:
            # Keep only the windows that can still be current; old ones never count again.
            newest = {reset: max(s for r, s in self.by_window if r is reset) for reset in LimitReset}
            self.by_window = {w: v for w, v in self.by_window.items() if newest[w[0]] == w[1]}

    def used_in(self, reset: LimitReset, now_us: int) -> int:
        return self.by_window.get((reset, window_start_us(reset, now_us)), 0)


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    credits_nanos: int
    usage_nanos: int
    held_nanos: int
    purchased_nanos: int
    granted_nanos: int

    @property
    def balance_nanos(self) -> int:
        return self.credits_nanos - self.usage_nanos

    @property
    def available_nanos(self) -> int:
        return self.credits_nanos - self.usage_nanos - self.held_nanos


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    limit_nanos: int | None
    limit_reset: LimitReset | None
    usage_nanos: int
    usage_daily_nanos: int
    usage_weekly_nanos: int
    usage_monthly_nanos: int
    held_nanos: int
    resets_at_us: int | None = None  # when the cap's window starts over; None for a total cap

    @property
    def window_usage_nanos(self) -> int:
        if self.limit_reset is LimitReset.DAILY:
            return self.usage_daily_nanos
        if self.limit_reset is LimitReset.WEEKLY:
            return self.usage_weekly_nanos
        if self.limit_reset is LimitReset.MONTHLY:
            return self.usage_monthly_nanos
        return self.usage_nanos

    @property
    def limit_remaining_nanos(self) -> int | None:
        """Cap left in the current window, before in-flight holds (what /key reports)."""
        if self.limit_nanos is None:
            return None
        return self.limit_nanos - self.window_usage_nanos

    @property
    def spendable_nanos(self) -> int | None:
        """Cap left after in-flight holds (what a new request can reserve)."""
        remaining = self.limit_remaining_nanos
        return None if remaining is None else remaining - self.held_nanos


@dataclass(frozen=True, slots=True)
class Hold:
    id: int
    account_id: str
    key_id: str | None
    amount_nanos: int


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    hold: Hold | None
    account: AccountSnapshot
    key: KeySnapshot | None


class HoldAlreadyResolved(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Rider:
    """Another component's Redis step run inside the book's own script: one round trip, one atomic step.

    The rate limiter rides with a hold when both live in one Redis: its limits are taken with the hold (or,
    when either refuses, neither is), and given back with the settlement. `library` is Lua defining the
    hooks `rider_check(keys, argv)` (answers allowed, a reply, a state), `rider_take(keys, argv, state)` and
    `rider_end(keys, argv)`; see redis_scripts.NO_RIDER.
    """

    redis_url: str
    library: str
    keys: tuple[str, ...]
    args: tuple[str | int, ...]


class RiderRefused(Exception):
    """The rider's check refused (a rate limit): no hold was placed and nothing was taken."""

    def __init__(self, reply: list[int]) -> None:
        super().__init__("the rider refused")
        self.reply = reply


class Book(Protocol):
    """The hot-path figures: in process (one gateway process) or in Redis (many)."""

    origin: str
    sync_lock: asyncio.Lock
    watermark: int
    # Whether other writers' usage entries must reach this book through the poller (False when
    # every process settles usage into the shared figures itself).
    counts_external_usage: bool

    async def start(self) -> None: ...

    async def account_snapshot(self, account_id: str) -> AccountSnapshot: ...

    async def key_snapshot(self, key: KeyRecord, now_us: int) -> KeySnapshot: ...

    def carries(self, rider: Rider) -> bool:
        """Whether this book runs `rider` within its own scripts (it shares the rider's Redis)."""
        ...

    async def try_reserve(
        self, key: KeyRecord, amount_nanos: int, now_us: int, rider: Rider | None = None
    ) -> ReserveOutcome:
        """Place a hold, or none; with a rider, raise RiderRefused when the rider refused."""
        ...

    async def settle(
        self, hold: Hold, cost_nanos: int, at_us: int, generation_id: str = "", rider: Rider | None = None
    ) -> None: ...

    # Whether a settlement's reply may come after the client has its answer: true of a shared book, whose
    # `begin_settle` writes the step to Redis at once (every later read sees it) and returns the reply's wait.
    settles_after_answer: bool

    def begin_settle(
        self, hold: Hold, cost_nanos: int, at_us: int, generation_id: str = "", rider: Rider | None = None
    ) -> Awaitable[None]: ...

    async def release(self, hold: Hold, rider: Rider | None = None) -> None: ...

    async def renew(self, holds: Sequence[Hold], now_us: int) -> None:
        """Keep live holds from expiring (a long stream): one round trip, nothing in process."""
        ...

    async def maintain(self) -> None:
        """Background upkeep for the life of the process (expired holds, renewals); may return at once."""
        ...

    async def forget(self, entries: Sequence[LedgerEntry]) -> None:
        """These usage entries were committed after the book counted them: re-derive their figures."""
        ...

    async def apply_local(self, entry: LedgerEntry) -> None: ...

    async def apply_external(self, entries: Iterable[LedgerEntry], new_watermark: int) -> None: ...

    @property
    def open_hold_count(self) -> int: ...


def _refuse_rider(rider: Rider | None) -> None:
    if rider is not None:  # its step would silently not happen
        raise ValueError("the in-process book carries no rider; ask carries() first")


class AccountBook:
    def __init__(self, store: LedgerStore, origin: str) -> None:
        self._store = store
        self.origin = origin
        self._accounts: dict[str, AccountState] = {}
        self._keys: dict[str, KeyState] = {}
        self._open_holds: dict[int, Hold] = {}
        self._hold_ids = itertools.count(1)
        # Serialises loading figures with applying polled entries, so none is counted twice or missed.
        self.sync_lock = asyncio.Lock()
        self.watermark = 0
        self.counts_external_usage = True
        # External entries above the watermark already counted (the watermark may lag behind them).
        self._seen: dict[int, LedgerEntry] = {}

    async def start(self) -> None:
        self.watermark = await self._store.max_entry_id()

    async def _account(self, account_id: str) -> AccountState:
        state = self._accounts.get(account_id)
        if state is not None:
            return state
        async with self.sync_lock:
            state = self._accounts.get(account_id)
            if state is None:
                totals = await self._store.account_totals(account_id, up_to_id=self.watermark, own_origin=self.origin)
                state = AccountState(
                    credits_nanos=totals.credits_nanos,
                    usage_nanos=totals.usage_nanos,
                    purchased_nanos=totals.purchased_nanos,
                    granted_nanos=totals.granted_nanos,
                )
                self._accounts[account_id] = state
                for entry in self._seen.values():
                    if entry.account_id == account_id:
                        self._apply(entry)
        return state

    async def _key(self, key_id: str, now_us: int) -> KeyState:
        state = self._keys.get(key_id)
        if state is not None:
            return state
        async with self.sync_lock:
            state = self._keys.get(key_id)
            if state is None:
                totals = await self._store.key_usage(key_id, now_us, up_to_id=self.watermark, own_origin=self.origin)
                state = KeyState(
                    total_nanos=totals.total_nanos,
                    by_window={(reset, start): used for reset, (start, used) in totals.by_window.items()},
                )
                self._keys[key_id] = state
                for entry in self._seen.values():
                    if entry.key_id == key_id and entry.kind is EntryKind.USAGE:
                        state.add_usage(entry.amount_nanos, entry.created_at_us)
        return state

    @staticmethod
    def _account_snapshot(state: AccountState) -> AccountSnapshot:
        return AccountSnapshot(
            credits_nanos=state.credits_nanos,
            usage_nanos=state.usage_nanos,
            held_nanos=state.held_nanos,
            purchased_nanos=state.purchased_nanos,
            granted_nanos=state.granted_nanos,
        )

    @staticmethod
    def _key_snapshot(key: KeyRecord, state: KeyState, now_us: int) -> KeySnapshot:
        return KeySnapshot(
            limit_nanos=key.limit_nanos,
            limit_reset=key.limit_reset,
            usage_nanos=state.total_nanos,
            usage_daily_nanos=state.used_in(LimitReset.DAILY, now_us),
            usage_weekly_nanos=state.used_in(LimitReset.WEEKLY, now_us),
            usage_monthly_nanos=state.used_in(LimitReset.MONTHLY, now_us),
            held_nanos=state.held_nanos,
            resets_at_us=next_reset_us(key.limit_reset, now_us) if key.limit_reset else None,
        )

    async def account_snapshot(self, account_id: str) -> AccountSnapshot:
        return self._account_snapshot(await self._account(account_id))

    async def key_snapshot(self, key: KeyRecord, now_us: int) -> KeySnapshot:
        return self._key_snapshot(key, await self._key(key.id, now_us), now_us)

    def carries(self, rider: Rider) -> bool:
        return False  # no Redis here: the limiter takes its own round trips

    async def try_reserve(
        self, key: KeyRecord, amount_nanos: int, now_us: int, rider: Rider | None = None
    ) -> ReserveOutcome:
        """Reserve `amount_nanos` against both the account and the key's cap, or reserve nothing.

        A zero amount (a free request) still needs a balance of at least zero and a key cap not used up.
        """
        _refuse_rider(rider)
        account = await self._account(key.account_id)
        key_state = await self._key(key.id, now_us)
        # No await from here on: the check and the increment are one atomic step for this process.
        account_view = self._account_snapshot(account)
        key_view = self._key_snapshot(key, key_state, now_us)
        fits_account = (
            account_view.balance_nanos >= 0 if amount_nanos == 0 else account_view.available_nanos >= amount_nanos
        )
        key_left = key_view.spendable_nanos
        fits_key = key_left is None or (key_left > 0 and key_left >= amount_nanos)
        if not (fits_account and fits_key):
            return ReserveOutcome(hold=None, account=account_view, key=key_view)
        account.held_nanos += amount_nanos
        key_state.held_nanos += amount_nanos
        hold = Hold(id=next(self._hold_ids), account_id=key.account_id, key_id=key.id, amount_nanos=amount_nanos)
        self._open_holds[hold.id] = hold
        return ReserveOutcome(hold=hold, account=account_view, key=key_view)

    def _close(self, hold: Hold) -> None:
        if self._open_holds.pop(hold.id, None) is None:
            raise HoldAlreadyResolved(f"hold {hold.id} was already settled or released")
        self._accounts[hold.account_id].held_nanos -= hold.amount_nanos
        if hold.key_id is not None:
            self._keys[hold.key_id].held_nanos -= hold.amount_nanos

    async def settle(
        self, hold: Hold, cost_nanos: int, at_us: int, generation_id: str = "", rider: Rider | None = None
    ) -> None:
        """Replace the hold by the exact cost, which may exceed the hold (a low prompt estimate)."""
        _refuse_rider(rider)
        self._close(hold)
        self._accounts[hold.account_id].usage_nanos += cost_nanos
        if hold.key_id is not None:
            self._keys[hold.key_id].add_usage(cost_nanos, at_us)

    settles_after_answer = False  # in process: settling is done when `settle` returns

    def begin_settle(
        self, hold: Hold, cost_nanos: int, at_us: int, generation_id: str = "", rider: Rider | None = None
    ) -> Awaitable[None]:
        return self.settle(hold, cost_nanos, at_us, generation_id, rider)

    async def release(self, hold: Hold, rider: Rider | None = None) -> None:
        _refuse_rider(rider)
        self._close(hold)

    async def renew(self, holds: Sequence[Hold], now_us: int) -> None:
        """Holds in process live as long as the process: nothing expires them."""

    async def maintain(self) -> None:
        """Nothing to sweep: a dead process takes its in-process holds with it."""

    async def forget(self, entries: Sequence[LedgerEntry]) -> None:
        """The in-process figures counted these already and cannot lose them: nothing to re-derive."""

    async def apply_local(self, entry: LedgerEntry) -> None:
        """Count an entry this process wrote itself (a grant or payment), if its account is loaded.

        The caller holds `sync_lock` across the write and this call; an account loaded later counts
        the entry from the database (its own-origin entries are always visible to a loader).
        """
        self._apply(entry)

    async def apply_external(self, entries: Iterable[LedgerEntry], new_watermark: int) -> None:
        """Count entries other writers appended; the caller holds `sync_lock`."""
        for entry in entries:
            if entry.id is None or entry.id in self._seen or entry.id <= self.watermark:
                continue
            self._apply(entry)
            self._seen[entry.id] = entry
        self.watermark = max(self.watermark, new_watermark)
        self._seen = {entry_id: e for entry_id, e in self._seen.items() if entry_id > self.watermark}

    def _apply(self, entry: LedgerEntry) -> None:
        account = self._accounts.get(entry.account_id)
        if entry.kind is EntryKind.USAGE:
            if account is not None:
                account.usage_nanos += entry.amount_nanos
            key_state = self._keys.get(entry.key_id) if entry.key_id else None
            if key_state is not None:
                key_state.add_usage(entry.amount_nanos, entry.created_at_us)
            return
        if account is None:
            return
        account.credits_nanos += entry.amount_nanos
        if entry.kind in (EntryKind.PURCHASE, EntryKind.REFUND):
            account.purchased_nanos += entry.amount_nanos
        elif entry.kind is EntryKind.GRANT:
            account.granted_nanos += entry.amount_nanos

    @property
    def open_hold_count(self) -> int:
        return len(self._open_holds)

    def held_total_nanos(self) -> int:
        return sum(hold.amount_nanos for hold in self._open_holds.values())
