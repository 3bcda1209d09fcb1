"""The refusal log writes what was recorded, in batches, and wakes nobody while nothing is recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tollway.db.engine import create_engine
from tollway.db.migrations import migrate
from tollway.refusals import Refusal, RefusalLog


class CountingLog(RefusalLog):
    flushes = 0
    fail_next = False

    async def flush(self) -> None:
        self.flushes += 1
        if self.fail_next:
            self.fail_next = False
            raise OSError("database away")
        await super().flush()


def refusal(n: int) -> Refusal:
    return Refusal("acct", None, 1_000_000 + n, 402, "balance_empty", f"refused {n}", f"req-{n}")


def test_idle_log_never_wakes_and_a_burst_is_written_in_one_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}")
        await migrate(engine)
        log = CountingLog(engine)
        runner = asyncio.create_task(log.run(interval_s=0.05))
        await asyncio.sleep(0.3)
        assert log.flushes == 0  # nothing recorded: not woken once
        for n in range(5):
            log.record(refusal(n))
        await asyncio.sleep(0.2)
        assert log.flushes == 1
        log.fail_next = True
        log.record(refusal(5))
        await asyncio.sleep(0.3)
        assert log.flushes == 3  # the failed write is retried
        assert [r.request_id for r in await log.recent("acct", 10)] == [f"req-{n}" for n in range(5, -1, -1)]
        await asyncio.sleep(0.2)
        assert log.flushes == 3  # idle again
        runner.cancel()
        await engine.dispose()

    asyncio.run(scenario())
