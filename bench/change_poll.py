"""What one change poll costs the event loop (PostgreSQL + Redis), and how many an idle process makes.

    python bench/change_poll.py [--polls 200] [--idle 5] [--postgres URL] [--redis URL]

Builds the services on a scratch database (created and dropped on the PostgreSQL server given), then times
`poll_once()` (every step: what a safety poll or a pre-notification poll reads) as wall and CPU time of this
process, and counts the rounds the follower runs while nothing changes. Run it from another checkout with
PYTHONPATH=<checkout>/src to compare versions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from run import scratch_database
from tollway.services import build_services
from tollway.settings import Settings


async def measure(args: argparse.Namespace, url: str) -> None:
    settings = Settings(database_url=url, redis_url=args.redis, auto_migrate=True, offline_enabled=True)
    services = await build_services(settings)
    await services.start()
    try:
        for _ in range(20):
            await services.changes.poll_once()
        walls, cpus = [], []
        for _ in range(args.polls):
            wall, cpu = time.perf_counter(), time.process_time()
            await services.changes.poll_once()
            walls.append((time.perf_counter() - wall) * 1000)
            cpus.append((time.process_time() - cpu) * 1000)
        print(
            f"poll_once (every step), {args.polls} polls: wall p50 {statistics.median(walls):.2f} ms, "
            f"mean {statistics.fmean(walls):.2f} ms; CPU mean {statistics.fmean(cpus):.2f} ms"
        )
        rounds = getattr(services.changes, "rounds", None)
        if rounds is not None:
            await asyncio.sleep(args.idle)
            print(f"rounds while idle for {args.idle:.0f} s: {services.changes.rounds - rounds}")
        else:
            interval_s = settings.ledger_poll_interval_seconds
            print(f"rounds while idle: one per ledger_poll_interval_seconds ({interval_s} s)")
    finally:
        await services.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to count idle rounds")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()
    name = f"tollway_bench_poll_{os.getpid()}"
    url = scratch_database(args.postgres, name, create=True)
    try:
        asyncio.run(measure(args, url))
    finally:
        scratch_database(args.postgres, name, create=False)


if __name__ == "__main__":
    main()
