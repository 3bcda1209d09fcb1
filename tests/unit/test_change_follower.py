"""The change follower: with notifications, quiet until told; polled, reading only after a commit elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from tollway.changes.follower import ChangeFollower
from tollway.changes.notifications import AUTO_RECHARGE, CHANNEL, LEDGER, REVISION, ChangeNotifications

INTERVAL_S = 0.01


class FakeNotifications(ChangeNotifications):
    """A listening connection without PostgreSQL: the test notifies, drops it and refuses reconnections."""

    def __init__(self) -> None:
        super().__init__("postgresql://unused")
        self.connected = False
        self.listens = 0
        self.refuse = False
        self.on_listen: Callable[[], None] = lambda: None

    @property
    def listening(self) -> bool:
        return self.connected

    async def listen(self) -> None:
        if self.refuse:
            raise OSError("connection refused")
        self.listens += 1
        self.connected = True
        self.on_listen()

    async def check(self) -> bool:
        return self.connected

    def close(self) -> None:
        self.connected = False

    def notify(self, topic: str) -> None:
        self._notified(None, 0, CHANNEL, topic)

    def drop(self) -> None:
        self.connected = False
        self.arrived.set()


class Recorder:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.called = asyncio.Event()

    def bump(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        self.called.set()

    def step(self, name: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            self.bump(name)

        return run

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait (at most 5 s) until the steps' calls satisfy `condition`."""
        async with asyncio.timeout(5):
            while not condition():
                self.called.clear()
                await self.called.wait()


def build() -> tuple[ChangeFollower, Recorder]:
    recorder = Recorder()
    follower = ChangeFollower()
    follower.add_step(recorder.step("ledger"), LEDGER)
    follower.add_step(recorder.step("keys"), REVISION)
    follower.add_step(recorder.step("limits"), REVISION)
    follower.add_step(recorder.step("auto"), AUTO_RECHARGE)
    follower.add_step(recorder.step("sweep"))
    return follower, recorder


async def _notified_topics_only() -> None:
    follower, recorder = build()
    notifications = FakeNotifications()
    task = asyncio.create_task(follower.run(INTERVAL_S, notifications, safety_interval_s=600))
    try:
        await recorder.until(lambda: recorder.calls.get("sweep", 0) == 1)
        assert recorder.calls == {"ledger": 1, "keys": 1, "limits": 1, "auto": 1, "sweep": 1}  # the first: all
        rounds = follower.rounds
        await asyncio.sleep(20 * INTERVAL_S)
        assert follower.rounds == rounds  # nothing notified, no safety poll due: no round, no query

        notifications.notify(REVISION)
        notifications.notify(REVISION)  # two in one interval: one round
        await recorder.until(lambda: recorder.calls["keys"] == 2)
        await asyncio.sleep(5 * INTERVAL_S)
        assert recorder.calls == {"ledger": 1, "keys": 2, "limits": 2, "auto": 1, "sweep": 2}

        notifications.notify(LEDGER)
        await recorder.until(lambda: recorder.calls["ledger"] == 2)
        assert recorder.calls["keys"] == 2 and recorder.calls["auto"] == 1
    finally:
        task.cancel()


def test_only_the_notified_steps_run_and_nothing_runs_unnotified() -> None:
    asyncio.run(_notified_topics_only())


async def _gap_reads_everything() -> None:
    follower, recorder = build()
    notifications = FakeNotifications()
    task = asyncio.create_task(follower.run(INTERVAL_S, notifications, safety_interval_s=600))
    try:
        await recorder.until(lambda: recorder.calls.get("auto", 0) == 1)

        notifications.refuse = True
        notifications.drop()  # PostgreSQL went away: poll everything every round meanwhile
        await recorder.until(lambda: recorder.calls["auto"] >= 4)
        assert notifications.listens == 1

        at_listen: list[int] = []
        notifications.on_listen = lambda: at_listen.append(recorder.calls["auto"])
        notifications.refuse = False  # back: listen again, then read everything once more
        await recorder.until(lambda: bool(at_listen) and recorder.calls["auto"] > at_listen[0])
        assert notifications.listens == 2
        calls = recorder.calls["auto"]
        await asyncio.sleep(20 * INTERVAL_S)
        assert recorder.calls["auto"] == calls  # quiet again
    finally:
        task.cancel()


def test_a_lost_listening_connection_falls_back_to_polling_and_listens_again() -> None:
    asyncio.run(_gap_reads_everything())


async def _safety_poll() -> None:
    follower, recorder = build()
    notifications = FakeNotifications()
    task = asyncio.create_task(follower.run(INTERVAL_S, notifications, safety_interval_s=5 * INTERVAL_S))
    try:
        # Nothing notified, yet every step runs now and then.
        await recorder.until(lambda: recorder.calls.get("ledger", 0) >= 3)
        assert notifications.listens == 1
    finally:
        task.cancel()


def test_the_safety_poll_reads_everything_without_notifications() -> None:
    asyncio.run(_safety_poll())


def failing_once(recorder: Recorder) -> Callable[[], Awaitable[None]]:
    """The keys step, whose second run fails (the database away for a moment)."""
    failures = [RuntimeError("database away")]

    async def flaky() -> None:
        recorder.bump("keys")
        if recorder.calls["keys"] == 2 and failures:
            raise failures.pop()

    return flaky


async def _failed_round() -> None:
    recorder = Recorder()
    follower = ChangeFollower()
    follower.add_step(failing_once(recorder), REVISION)
    follower.add_step(recorder.step("ledger"), LEDGER)
    notifications = FakeNotifications()
    task = asyncio.create_task(follower.run(INTERVAL_S, notifications, safety_interval_s=600))
    try:
        await recorder.until(lambda: recorder.calls.get("ledger", 0) == 1)
        notifications.notify(REVISION)
        # The notified round failed: its topic is not lost, the next round reads everything.
        await recorder.until(lambda: recorder.calls.get("ledger", 0) == 2)
        assert recorder.calls["keys"] == 3 and follower.healthy
    finally:
        task.cancel()


def test_a_failed_round_is_followed_by_a_full_one() -> None:
    asyncio.run(_failed_round())


class Probe:
    """SQLite's data_version as the follower sees it: True once after each commit by another connection."""

    def __init__(self) -> None:
        self.pending = True  # the first question is always answered yes
        self.asked = 0
        self.broken = False

    def commit_elsewhere(self) -> None:
        self.pending = True

    def __call__(self) -> bool:
        self.asked += 1
        if self.broken:
            raise OSError("disk I/O error")
        moved, self.pending = self.pending, False
        return moved


@contextlib.asynccontextmanager
async def polled(follower: ChangeFollower, probe: Probe, safety_interval_s: float) -> AsyncIterator[None]:
    """The follower polling (no notifications) with `probe` as SQLite's data_version, for the block's length."""
    task = asyncio.create_task(follower.run(INTERVAL_S, None, safety_interval_s=safety_interval_s, changed=probe))
    try:
        yield
    finally:
        task.cancel()


async def _polled_with_probe() -> None:
    follower, recorder = build()
    probe = Probe()
    async with polled(follower, probe, safety_interval_s=600):
        await recorder.until(lambda: recorder.calls.get("auto", 0) == 1)
        asked = probe.asked
        await recorder.until(lambda: probe.asked >= asked + 10)
        # Nothing committed elsewhere: only the sweep (no topic) ran in those rounds.
        assert recorder.calls["ledger"] == recorder.calls["keys"] == recorder.calls["auto"] == 1
        assert recorder.calls["sweep"] >= 10

        probe.commit_elsewhere()
        await recorder.until(lambda: recorder.calls["auto"] == 2)
        assert recorder.calls["ledger"] == recorder.calls["keys"] == recorder.calls["limits"] == 2

        probe.broken = True  # a probe that fails cannot tell: every round reads
        await recorder.until(lambda: recorder.calls["keys"] >= 4)


def test_a_polled_round_reads_only_after_a_commit_elsewhere() -> None:
    asyncio.run(_polled_with_probe())


async def _polled_safety() -> None:
    follower, recorder = build()
    probe = Probe()
    async with polled(follower, probe, safety_interval_s=5 * INTERVAL_S):
        # The probe never reports another commit after the first round, yet every step runs now and then.
        await recorder.until(lambda: recorder.calls.get("keys", 0) >= 3)
        assert recorder.calls["sweep"] > recorder.calls["keys"]


def test_a_polled_follower_still_reads_everything_now_and_then() -> None:
    asyncio.run(_polled_safety())


async def _polled_failure() -> None:
    recorder = Recorder()
    follower = ChangeFollower()
    follower.add_step(failing_once(recorder), REVISION)
    probe = Probe()
    async with polled(follower, probe, safety_interval_s=600):
        await recorder.until(lambda: recorder.calls.get("keys", 0) == 1)
        probe.commit_elsewhere()
        # The round the probe announced failed; the probe will not say so again, yet the next round reads.
        await recorder.until(lambda: recorder.calls["keys"] == 3)
        assert follower.healthy


def test_a_failed_polled_round_is_read_again_though_the_probe_moved_on() -> None:
    asyncio.run(_polled_failure())
