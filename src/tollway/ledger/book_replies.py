"""A shared book's settlement replies, awaited after the client has its answer.

A paid request's settlement commits its ledger entry (the record), then replaces the hold by the cost in
Redis. The Redis script is written before the answer leaves, so any read made after the client saw it sees
the cost; waiting for the script's reply as well held every answer back by one more round trip, about a
sixth of what PostgreSQL + Redis added to an unloaded request. The replies are awaited here instead, and
what must follow a settlement (auto-recharge watching the balance) runs after its reply. A reply that is an
error is handled as before (the book reloads the figures from the ledger); shutdown waits for them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("tollway.ledger")

After = Callable[[], Awaitable[None]]


class BookReplies:
    def __init__(self) -> None:
        self._waiting: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._waiting)

    def follow(self, reply: Awaitable[None], then: After | None) -> None:
        """Await `reply` in the background, then `then`; kept referenced until both ended."""
        task = asyncio.ensure_future(_finish(reply, then))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def drain(self, timeout_s: float) -> bool:
        """Wait for every reply still out (shutdown, before Redis is closed); False when some did not come."""
        if not self._waiting:
            return True
        _done, pending = await asyncio.wait(set(self._waiting), timeout=timeout_s)
        return not pending


async def _finish(reply: Awaitable[None], then: After | None) -> None:
    try:
        await reply
        if then is not None:
            await then()
    except Exception:  # the book handles its own errors; this is what is left (a listener's bug)
        log.exception("after-settlement step failed")
