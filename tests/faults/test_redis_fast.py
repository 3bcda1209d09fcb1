"""The lean script runner against a Redis of the test's own: flushed scripts, restarts, a dead server, a slow one."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tests.faults.own_redis import OwnRedis
from tollway.ledger.redis_fast import ScriptRunner

ECHO = "return {tonumber(ARGV[1]) + 1, KEYS[1], ARGV[2]}"


def runner_for(redis_server: OwnRedis, timeout_s: float = 2.0) -> ScriptRunner:
    runner = ScriptRunner.from_url(redis_server.url.replace("/0", "/3"), timeout_s=timeout_s)
    assert runner is not None
    return runner


def test_answers_as_redis_py_does_and_survives_script_flush_and_restart(tmp_path: Path) -> None:
    redis_server = OwnRedis(tmp_path).start()

    async def run() -> None:
        runner = runner_for(redis_server)
        echo = runner.register_script(ECHO)
        # Calls in flight together share the connection; each gets its own answer.
        answers = await asyncio.gather(*(echo(keys=[f"k{i}"], args=[i, "é"]) for i in range(50)))
        assert answers == [[i + 1, f"k{i}".encode(), "é".encode()] for i in range(50)]
        with redis_server.client() as client:
            client.script_flush()
        assert await echo(keys=["a"], args=[1, "x"]) == [2, b"a", b"x"]  # NOSCRIPT: sent in full once
        redis_server.restart()
        assert await echo(keys=["a"], args=[2, "x"]) == [3, b"a", b"x"]  # a dropped connection: retried once
        with pytest.raises(ResponseError):
            await runner.register_script("return redis.call('nonsense')")(keys=[], args=[])
        assert await echo(keys=["b"], args=[3, "y"]) == [4, b"b", b"y"]  # an error reply leaves it usable
        with redis_server.client() as client:
            assert client.dbsize() == 0 and client.info("keyspace") == {}  # db 3 was selected: nothing written
        redis_server.stop()
        with pytest.raises(RedisConnectionError):
            await echo(keys=["a"], args=[1, "x"])
        redis_server.start()
        assert await echo(keys=["a"], args=[4, "x"]) == [5, b"a", b"x"]
        await runner.aclose()

    try:
        asyncio.run(run())
    finally:
        redis_server.stop()


def test_a_slow_reply_times_out_and_the_next_call_gets_a_fresh_connection(tmp_path: Path) -> None:
    redis_server = OwnRedis(tmp_path, "--enable-debug-command", "yes").start()

    async def run() -> None:
        runner = runner_for(redis_server, timeout_s=0.3)
        echo = runner.register_script(ECHO)
        assert await echo(keys=["a"], args=[1, "x"]) == [2, b"a", b"x"]
        sleeper = threading.Thread(target=lambda: redis_server.client().execute_command("DEBUG", "SLEEP", "1"))
        sleeper.start()
        await asyncio.sleep(0.1)
        with pytest.raises(RedisTimeoutError) as raised:
            await asyncio.gather(echo(keys=["a"], args=[1, "x"]), echo(keys=["b"], args=[1, "x"]))
        assert isinstance(raised.value, RedisError)
        await asyncio.to_thread(sleeper.join)
        assert await echo(keys=["c"], args=[7, "z"]) == [8, b"c", b"z"]
        await runner.aclose()

    try:
        asyncio.run(run())
    finally:
        redis_server.stop()
