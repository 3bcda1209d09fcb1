"""`tollway serve --workers N` is supervised: a killed worker is replaced under load, SIGTERM stops all in time."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.faults.own_redis import OwnRedis
from tests.support import free_port, run_cli

STOP_BOUND_S = 10.0
ECHO = {"model": "tollway/offline-small", "max_tokens": 5, "messages": [{"role": "user", "content": "/echo hi"}]}

pytestmark = pytest.mark.slow


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path).start()
    yield server
    server.stop()


@dataclass
class Supervised:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    key: str
    database_path: Path
    account_id: str = ""
    seen_pids: set[int] = field(default_factory=set)

    def log_lines(self) -> list[dict[str, object]]:
        lines = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue
        return lines

    def serving_pids(self) -> list[int]:
        pids = [int(str(line["pid"])) for line in self.log_lines() if line.get("message") == "serving"]
        self.seen_pids.update(pids)
        return pids

    def live_workers(self) -> set[int]:
        return {pid for pid in self.serving_pids() if alive(pid)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def wait_for(condition: object, timeout_s: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def supervised(tmp_path: Path, redis_server: OwnRedis) -> Iterator[Supervised]:
    database = f"sqlite:///{tmp_path / 'fresh.db'}"  # a new database: the supervisor migrates it once
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "TOLLWAY_REDIS_URL": redis_server.url, "TOLLWAY_LEDGER_POLL_INTERVAL_SECONDS": "0.1"}
    command = [sys.executable, "-m", "tollway", "serve", "--port", str(port), "--workers", "2"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--database-url", database], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    server = Supervised(process, f"http://127.0.0.1:{port}", log_path, key="", database_path=tmp_path / "fresh.db")
    try:
        wait_for(lambda: len(server.live_workers()) == 2, 30, "two workers serving")
        demo = run_cli("demo", "--json", database_url=database)
        server.key = json.loads(demo.stdout)["key"]
        server.account_id = json.loads(demo.stdout)["account"]["id"]
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in server.seen_pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def chat(base_url: str, key: str) -> int:
    try:
        response = httpx.post(
            base_url + "/api/v1/chat/completions", json=ECHO, headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
    except httpx.HTTPError:
        return -1
    return response.status_code


def stop_and_time(server: Supervised) -> float:
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(STOP_BOUND_S + 5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the supervisor did not exit {STOP_BOUND_S + 5} s after SIGTERM")
    return time.monotonic() - started


def test_migrated_once_before_the_workers_start(supervised: Supervised) -> None:
    messages = [line.get("message") for line in supervised.log_lines()]
    assert messages.count("database migrated") == 1
    assert messages.index("database migrated") < messages.index("serving")
    assert not [line for line in supervised.log_lines() if line.get("level") == "error"]


def test_a_killed_worker_is_replaced_under_load_and_sigterm_stops_everything(supervised: Supervised) -> None:
    statuses: list[tuple[float, int]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            statuses.append((time.monotonic(), chat(supervised.base_url, supervised.key)))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        victim = sorted(supervised.live_workers())[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(
            lambda: len(supervised.live_workers()) == 2 and victim not in supervised.live_workers(), 15, "a new worker"
        )
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    after = [status for at, status in statuses if at > killed_at + 0.2]
    assert after and set(after) == {200}, f"requests after the kill: {sorted(set(after))}"
    assert statuses and sum(1 for _, status in statuses if status == 200) > 10
    died = [line for line in supervised.log_lines() if line.get("message") == "worker died; starting a new one"]
    assert len(died) == 1 and died[0]["pid"] == victim and died[0]["exit_code"] == -signal.SIGKILL

    elapsed = stop_and_time(supervised)
    assert elapsed < STOP_BOUND_S, elapsed
    assert supervised.process.returncode == 0
    assert not [pid for pid in supervised.seen_pids if alive(pid)], "workers outlived the supervisor"
    # Every answer a client received is in the ledger once, also those of the killed worker.
    with sqlite3.connect(supervised.database_path) as connection:
        (usage_entries,) = connection.execute(
            "SELECT COUNT(*) FROM ledger_entries WHERE account_id = ? AND kind = 'usage'", (supervised.account_id,)
        ).fetchone()
    assert usage_entries == sum(1 for _, status in statuses if status == 200)


def test_sigterm_kills_a_worker_that_does_not_stop(supervised: Supervised) -> None:
    stuck = sorted(supervised.live_workers())[0]
    os.kill(stuck, signal.SIGSTOP)  # frozen: it cannot act on SIGTERM
    elapsed = stop_and_time(supervised)
    assert elapsed < STOP_BOUND_S, elapsed
    assert not [pid for pid in supervised.seen_pids if alive(pid)], "workers outlived the supervisor"
    killed = [
        line for line in supervised.log_lines() if line.get("message") == "worker did not stop in time; killing it"
    ]
    assert [line["pid"] for line in killed] == [stuck]


def test_killing_the_supervisor_takes_its_workers_along(supervised: Supervised) -> None:
    workers = supervised.live_workers()
    os.kill(supervised.process.pid, signal.SIGKILL)
    supervised.process.wait(10)
    wait_for(lambda: not [pid for pid in workers if alive(pid)], STOP_BOUND_S + 2, "the orphaned workers to stop")
