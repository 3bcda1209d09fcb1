"""What keeps sign-in cheap to defend: password hashing off the event loop, and failed-login throttling.

argon2 costs about 125 ms of CPU a hash: run on the event loop, a few wrong passwords a second would stall every
stream. Hashes run in a small thread pool (argon2-cffi releases the GIL), with a bounded backlog so a flood is
refused instead of queued without end.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

T = TypeVar("T")


class HashingBusy(RuntimeError):
    """Too many password hashes are already waiting; the caller should answer 429 and retry later."""


class PasswordHashing:
    def __init__(self, threads: int = 2, max_waiting: int = 32) -> None:
        self._hasher = PasswordHasher()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")
        self._max_waiting = max_waiting
        self._waiting = 0

    async def _run(self, work: Callable[[], T]) -> T:
        if self._waiting >= self._max_waiting:
            raise HashingBusy("too many sign-in attempts are being checked; retry in a second")
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, work)
        finally:
            self._waiting -= 1

    async def hash(self, password: str) -> str:
        return await self._run(lambda: self._hasher.hash(password))

    async def verify(self, password_hash: str, password: str) -> bool:
        def check() -> bool:
            try:
                return bool(self._hasher.verify(password_hash, password))
            except (VerificationError, InvalidHashError):
                return False

        return await self._run(check)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float


class LoginThrottle:
    """Token buckets of failed sign-ins per subject (a client address, an email), in memory and bounded.

    Each failure takes a token; a subject with no token left is refused until one refills. The table keeps the
    `max_subjects` most recently failing subjects; an evicted subject starts full again, so the bound costs an
    attacker nothing they could not get by waiting.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        max_subjects: int = 100_000,
        now_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate_per_s = per_minute / 60.0
        self._burst = float(max(1, burst))
        self._max_subjects = max_subjects
        self._now_s = now_s
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, subject: str, now_s: float) -> _Bucket | None:
        bucket = self._buckets.get(subject)
        if bucket is None:
            return None
        bucket.tokens = min(self._burst, bucket.tokens + (now_s - bucket.at_s) * self._rate_per_s)
        bucket.at_s = now_s
        if bucket.tokens >= self._burst:
            del self._buckets[subject]  # full again: nothing worth remembering
            return None
        return bucket

    def retry_after_s(self, *subjects: str) -> int:
        """0 when every subject may try now; otherwise whole seconds until all of them may."""
        now_s = self._now_s()
        wait_s = 0.0
        for subject in subjects:
            bucket = self._refilled(subject, now_s)
            if bucket is not None and bucket.tokens < 1.0:
                wait_s = max(wait_s, (1.0 - bucket.tokens) / self._rate_per_s if self._rate_per_s else 3600.0)
        return math.ceil(wait_s) if wait_s > 0 else 0

    def failed(self, *subjects: str) -> None:
        now_s = self._now_s()
        for subject in subjects:
            bucket = self._refilled(subject, now_s) or _Bucket(self._burst, now_s)
            bucket.tokens = max(0.0, bucket.tokens - 1.0)
            self._buckets[subject] = bucket
            self._buckets.move_to_end(subject)
        while len(self._buckets) > self._max_subjects:
            self._buckets.popitem(last=False)
