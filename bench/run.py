"""Tollway against a direct call and a plain reverse proxy (nginx), measured in the same run.

Starts a fast fake upstream (nginx serving fixed answers), a 50 ms fake upstream (aiohttp), nginx as a
plain reverse proxy in front of both, the "floor" (bench/floor.py: a bare aiohttp + uvloop pass-through
proxy, no features) in front of the fast one, Tollway (SQLite, one process, auth + ledger on) and Tollway
on PostgreSQL + Redis (one worker, limits on); then drives each with the same load from wrk and a paced
client, and prints requests/s, p50/p99 latency, latency added over the direct call, and the gateway's CPU
time per request (for PostgreSQL + Redis also the CPU the database and Redis servers spent, "store").

Usage: python bench/run.py [--duration 5] [--targets direct,floor,tollway,tollway-pg]
       [--scenarios unloaded,c1,c16,c64,stream,slow] [--core-only] [--json results.json]
Needs nginx and wrk (apt-get install nginx-light wrk); the script says so if they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "fast",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fast upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
    }
)


def _stream_event(choices: list[dict[str, object]], **extra: object) -> str:
    """One chunk as OpenAI writes it: compact JSON, the same leading fields in every chunk."""
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "fast",
        "system_fingerprint": "fp_bench",
        "choices": choices,
        **extra,
    }
    return "data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n"


STREAM_BODY = (
    "".join(
        _stream_event(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": f" w{i}"} if i == 0 else {"content": f" w{i}"},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ]
        )
        for i in range(20)
    )
    + _stream_event([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])
    + _stream_event([], usage={"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32})
    + "data: [DONE]\n\n"
)


ANTHROPIC_MESSAGE = json.dumps(
    {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "fast",
        "content": [{"type": "text", "text": "Hello from the fast upstream."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 6},
    }
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


@dataclass
class Ports:
    upstream: int = field(default_factory=free_port)
    slow: int = field(default_factory=free_port)
    proxy: int = field(default_factory=free_port)
    tollway: int = field(default_factory=free_port)
    tollway_pg: int = field(default_factory=free_port)
    floor: int = field(default_factory=free_port)
    dead: int = field(default_factory=free_port)


def nginx_config(ports: Ports, prefix: Path) -> str:
    return f"""
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    keepalive_requests 1000000;
    upstream fast {{ server 127.0.0.1:{ports.upstream}; keepalive 128; }}
    upstream slow {{ server 127.0.0.1:{ports.slow}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{ports.upstream};
        location = /v1/chat/completions {{
            client_body_buffer_size 64k;
            default_type application/json;
            return 200 {nginx_string(COMPLETION)};
        }}
        location = /anthropic/v1/messages {{
            client_body_buffer_size 64k;
            default_type application/json;
            return 200 {nginx_string(ANTHROPIC_MESSAGE)};
        }}
        location = /stream/v1/chat/completions {{
            # The body is a file (longer than a config string may be); POST to a file is 405, turned
            # into the file's 200 by the internal redirect.
            client_body_buffer_size 64k;
            default_type text/event-stream;
            alias {prefix}/stream.sse;
            error_page 405 =200 /stream-body;
        }}
        location = /stream-body {{
            internal;
            default_type text/event-stream;
            alias {prefix}/stream.sse;
        }}
    }}
    server {{
        listen 127.0.0.1:{ports.proxy};
        location /slow/ {{
            proxy_pass http://slow/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location / {{
            proxy_pass http://fast;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def tollway_config(ports: Ports) -> str:
    price = {"prompt": "0.000001", "completion": "0.000002", "request": "0"}
    config = {
        "providers": [
            {"name": "fast", "kind": "openai", "base_url": f"http://127.0.0.1:{ports.upstream}/v1"},
            {
                "name": "faststream",
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{ports.upstream}/stream/v1",
            },
            {"name": "slow", "kind": "openai", "base_url": f"http://127.0.0.1:{ports.slow}/v1"},
            {"name": "anthro", "kind": "anthropic", "base_url": f"http://127.0.0.1:{ports.upstream}/anthropic"},
            {"name": "dead", "kind": "openai", "base_url": f"http://127.0.0.1:{ports.dead}/v1"},
        ],
        "models": [
            {
                "id": "bench/fast",
                "endpoints": [{"provider": "fast", "upstream_model": "fast", "pricing": price}],
            },
            {
                "id": "bench/stream",
                "endpoints": [{"provider": "faststream", "upstream_model": "fast", "pricing": price}],
            },
            {
                "id": "bench/slow",
                "endpoints": [{"provider": "slow", "upstream_model": "slow", "pricing": price}],
            },
            {
                "id": "bench/anthropic",
                "endpoints": [{"provider": "anthro", "upstream_model": "fast", "pricing": price}],
            },
            {
                "id": "bench/failover",
                "endpoints": [
                    {
                        "provider": "dead",
                        "upstream_model": "dead",
                        "pricing": {"prompt": "0.0000001", "completion": "0"},
                    },
                    {"provider": "fast", "upstream_model": "fast", "pricing": price},
                ],
            },
        ],
    }
    return json.dumps(config)  # JSON is YAML


@dataclass
class Target:
    name: str
    url_for: Callable[[str], str | None]
    headers: dict[str, str]
    model_prefix: str
    pid: int | None = None
    count_store: bool = False  # add the CPU of the PostgreSQL and Redis servers (as "store")

    def body(self, kind: str) -> str:
        model = {"fast": "fast", "stream": "stream", "slow": "slow", "anthropic": "anthropic", "failover": "failover"}[
            kind
        ]
        payload = {
            "model": f"{self.model_prefix}{model}",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
        }
        if kind == "stream":
            payload["stream"] = True
        return json.dumps(payload)


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def store_pids() -> list[int]:
    """The PostgreSQL and Redis server processes on this machine (their CPU counts for the scaled-out mode)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = Path(f"/proc/{entry.name}/comm").read_text().strip()
            except OSError:
                continue
            if name.startswith(("postgres", "redis-server")):
                found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    figures = {}
    for pid in pids:
        try:
            figures[pid] = process_cpu_seconds(pid)
        except OSError:
            continue
    return figures


def cpu_spent(before: dict[int, float], pids: list[int]) -> float:
    after = cpu_seconds(pids)
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, float]:
    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
        "requests": float(total.group(1)) if total else 0.0,
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def run_wrk(
    url: str, headers: dict[str, str], body: str, connections: int, duration: float, work: Path
) -> dict[str, float]:
    script = work / "post.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    threads = 1 if connections < 16 else 2
    output = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(output)


def run_paced(url: str, headers: dict[str, str], body: str, count: int, gap_s: float) -> dict[str, float]:
    """One request every gap_s on a kept-alive connection: latency when the gateway is idle."""
    latencies = []
    with httpx.Client(headers={**headers, "Content-Type": "application/json"}, timeout=10) as client:
        client.post(url, content=body)
        for _ in range(count):
            started = time.perf_counter()
            response = client.post(url, content=body)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
            time.sleep(gap_s)
    latencies.sort()
    return {
        "rps": 0.0,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "requests": float(count),
        "errors": 0.0,
    }


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def start_tollway(
    ports: Ports, work: Path, env_extra: dict[str, str], workers: int = 1, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = port or ports.tollway
    database = env_extra.get("TOLLWAY_DATABASE_URL", f"sqlite:///{work / 'bench.db'}")
    env = {**os.environ, "TOLLWAY_DATABASE_URL": database, **env_extra}
    cli = [PYTHON, "-m", "tollway"]
    account = subprocess.run(
        [*cli, "accounts", "create", "--email", f"bench-{port}@example.com"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run([*cli, "credits", "grant", account, "1000000"], env=env, check=True, capture_output=True)
    created = subprocess.run(
        [*cli, "keys", "create", account, "--name", "bench", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    key = json.loads(created)["key"]
    if "TOLLWAY_REDIS_URL" in env_extra:
        # Limits on: a key limit high enough never to refuse, so every request pays for the check.
        key_hash = json.loads(created)["data"]["hash"]
        subprocess.run(
            [*cli, "limits", "set", "--key", key_hash, "--requests", "1000000000", "--per", "minute"],
            env=env,
            check=True,
            capture_output=True,
        )
    (work / f"tollway-{port}.yaml").write_text(tollway_config(ports))
    log = (work / f"tollway-{port}.log").open("wb")
    process = subprocess.Popen(
        [
            *cli,
            "serve",
            "--port",
            str(port),
            "--config",
            str(work / f"tollway-{port}.yaml"),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_http(f"http://127.0.0.1:{port}/health")
    return process, key


SCENARIOS = {
    "unloaded": ("unloaded (1 req / 20 ms)", "fast", 0),
    "c1": ("closed loop, 1 connection", "fast", 1),
    "c16": ("closed loop, 16 connections", "fast", 16),
    "c64": ("closed loop, 64 connections", "fast", 64),
    "stream": ("streaming (20 chunks), 16 connections", "stream", 16),
    "slow": ("50 ms upstream, 64 connections", "slow", 64),
}


def measure(
    targets: list[Target], scenarios: list[str], duration: float, work: Path, paced_count: int
) -> dict[str, dict[str, dict[str, float]]]:
    results: dict[str, dict[str, dict[str, float]]] = {}
    for key in scenarios:
        label, kind, connections = SCENARIOS[key]
        results[label] = {}
        for target in targets:  # interleaved: every target sees the same machine state
            url = target.url_for(kind)
            if url is None:
                continue
            gateway = [target.pid, *children_of(target.pid)] if target.pid else []
            stores = store_pids() if target.count_store else []
            gateway_before, store_before = cpu_seconds(gateway), cpu_seconds(stores)
            if connections == 0:
                figures = run_paced(url, target.headers, target.body(kind), paced_count, 0.02)
            else:
                figures = run_wrk(url, target.headers, target.body(kind), connections, duration, work)
            if gateway and figures["requests"]:
                figures["cpu_ms_per_request"] = cpu_spent(gateway_before, gateway) * 1000 / figures["requests"]
            if stores and figures["requests"]:
                figures["store_cpu_ms_per_request"] = cpu_spent(store_before, stores) * 1000 / figures["requests"]
            results[label][target.name] = figures
    return results


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    print(
        f"{'scenario':38} {'target':12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'added p50':>10} "
        f"{'added p99':>10} {'cpu ms/req':>10} {'store cpu':>10}"
    )
    for label, by_target in results.items():
        direct = by_target.get("direct", {}).get("p50_ms")
        direct_p99 = by_target.get("direct", {}).get("p99_ms")
        for name, figures in by_target.items():
            added = "" if direct is None or name == "direct" else f"{figures['p50_ms'] - direct:+.3f}"
            added_p99 = "" if direct_p99 is None or name == "direct" else f"{figures['p99_ms'] - direct_p99:+.3f}"
            cpu = figures.get("cpu_ms_per_request")
            store = figures.get("store_cpu_ms_per_request")
            errors = f"  ({int(figures['errors'])} non-2xx)" if figures.get("errors") else ""
            print(
                f"{label:38} {name:12} {figures['rps']:9.0f} {figures['p50_ms']:8.3f} {figures['p99_ms']:8.3f} "
                f"{added:>10} {added_p99:>10} {'' if cpu is None else f'{cpu:.3f}':>10} "
                f"{'' if store is None else f'{store:.3f}':>10}{errors}"
            )
        print()


def start_own_redis(processes: list[subprocess.Popen[bytes]]) -> str:
    """A redis-server on a free port, nothing kept on disk; added to `processes` (to be stopped); its URL."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    url = f"redis://127.0.0.1:{port}/0"
    wait_redis(url)
    return url


def wait_redis(url: str) -> None:
    import redis

    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    sys.exit(f"Redis at {url} did not start")


def scratch_database(admin_url: str, name: str, create: bool) -> str:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if create:
                await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(run())
    return admin_url.rsplit("/", 1)[0] + "/" + name


def extended(ports: Ports, work: Path, args: argparse.Namespace, sqlite_rps: float) -> dict[str, dict[str, float]]:
    """Closed loop at 64 connections for the routing, limits and scale-out cases, one Tollway at a time."""
    import redis

    cases: list[tuple[str, str, dict[str, str], int]] = [
        ("SQLite, Anthropic upstream", "anthropic", {}, 1),
        ("SQLite, failover (first endpoint refuses)", "failover", {}, 1),
        ("SQLite, limits on, Redis", "fast", {"TOLLWAY_REDIS_URL": args.redis}, 1),
        ("PostgreSQL + Redis, 1 worker", "fast", {"TOLLWAY_REDIS_URL": args.redis, "pg": "1"}, 1),
        ("PostgreSQL + Redis, 2 workers", "fast", {"TOLLWAY_REDIS_URL": args.redis, "pg": "1"}, 2),
    ]
    results: dict[str, dict[str, float]] = {}
    for label, kind, env, workers in cases:
        redis.Redis.from_url(args.redis).flushdb()
        extra = {k: v for k, v in env.items() if k != "pg"}
        if "pg" in env:
            extra["TOLLWAY_DATABASE_URL"] = scratch_database(args.postgres, f"tollway_bench_{os.getpid()}", create=True)
        else:
            extra["TOLLWAY_DATABASE_URL"] = f"sqlite:///{work / (kind + str(workers) + label[:6] + '.db')}"
        ports.tollway = free_port()
        process, key = start_tollway(ports, work, extra, workers)
        try:
            target = Target(
                "tollway",
                lambda _k: f"http://127.0.0.1:{ports.tollway}/api/v1/chat/completions",
                {"Authorization": f"Bearer {key}"},
                "bench/",
                pid=process.pid,
            )
            # Warm-up first: connection pools fill and accounts load, as in any process that has served a while.
            warm_url = f"http://127.0.0.1:{ports.tollway}/api/v1/chat/completions"
            run_wrk(warm_url, target.headers, target.body(kind), 64, 1.0, work)
            pids = [process.pid, *children_of(process.pid)]
            stores = store_pids()
            before, store_before = cpu_seconds(pids), cpu_seconds(stores)
            url = target.url_for(kind)
            assert url is not None
            figures = run_wrk(url, target.headers, target.body(kind), 64, args.duration, work)
            if figures["requests"]:
                figures["cpu_ms_per_request"] = cpu_spent(before, pids) * 1000 / figures["requests"]
                figures["store_cpu_ms_per_request"] = cpu_spent(store_before, stores) * 1000 / figures["requests"]
            results[label] = figures
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(20)
            if "pg" in env:
                scratch_database(args.postgres, f"tollway_bench_{os.getpid()}", create=False)
    base = sqlite_rps
    print(
        f"{'closed loop, 64 connections':44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>10} "
        f"{'store cpu':>10}"
    )
    for label, figures in results.items():
        errors = f"  ({int(figures['errors'])} non-2xx)" if figures.get("errors") else ""
        cpu = figures.get("cpu_ms_per_request")
        store = figures.get("store_cpu_ms_per_request")
        print(
            f"{label:44} {figures['rps']:9.0f} {figures['p50_ms']:8.3f} {figures['p99_ms']:8.3f} "
            f"{'' if cpu is None else f'{cpu:.3f}':>10} {'' if store is None else f'{store:.3f}':>10}{errors}"
        )
    if base:
        for label in ("PostgreSQL + Redis, 1 worker", "PostgreSQL + Redis, 2 workers"):
            if label in results:
                print(f"{label}: {results[label]['rps'] / base:.2f}x the SQLite single-process case")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per closed-loop run")
    parser.add_argument("--paced", type=int, default=250, help="requests in the unloaded case")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL server for the scale-out cases (a scratch database is created on it)",
    )
    parser.add_argument(
        "--redis",
        default="",
        help="Redis for the shared cases (default: a redis-server of the run's own, flushed at will)",
    )
    parser.add_argument("--core-only", action="store_true", help="skip the routing and scale-out cases")
    parser.add_argument(
        "--targets",
        default="direct,nginx,floor,tollway,tollway-pg",
        help="comma-separated targets of the interleaved run",
    )
    parser.add_argument("--pg-workers", type=int, default=1, help="worker processes of the tollway-pg target")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--json", type=Path, help="write the figures to this file too")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} is missing: apt-get install nginx-light wrk")

    work = Path(tempfile.mkdtemp(prefix="tollway-bench-"))
    ports = Ports()
    processes: list[subprocess.Popen[bytes]] = []
    pg_tollway: subprocess.Popen[bytes] | None = None
    try:
        (work / "nginx.conf").write_text(nginx_config(ports, work))
        (work / "stream.sse").write_text(STREAM_BODY)
        work.chmod(0o755)  # nginx's workers (another user) read the stream body from it
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        processes.append(
            subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-p", str(work), "-g", "daemon off;"])
        )
        processes.append(
            subprocess.Popen([PYTHON, str(ROOT / "bench" / "slow_upstream.py"), "--port", str(ports.slow)])
        )
        wait_http(f"http://127.0.0.1:{ports.upstream}/")
        wait_http(f"http://127.0.0.1:{ports.slow}/")
        if not args.redis:
            # A Redis of its own: the run flushes it between cases, and runs side by side do not collide.
            args.redis = start_own_redis(processes)
        chosen = args.targets.split(",")
        processes.append(
            subprocess.Popen(
                [
                    PYTHON,
                    str(ROOT / "bench" / "floor.py"),
                    "--port",
                    str(ports.floor),
                    "--upstream",
                    f"http://127.0.0.1:{ports.upstream}",
                ]
            )
        )
        wait_http(f"http://127.0.0.1:{ports.floor}/")
        floor = processes[-1]
        tollway, key = start_tollway(ports, work, {})
        processes.append(tollway)
        pg_key = ""
        if "tollway-pg" in chosen:
            import redis

            redis.Redis.from_url(args.redis).flushdb()
            pg_env = {
                "TOLLWAY_REDIS_URL": args.redis,
                "TOLLWAY_DATABASE_URL": scratch_database(
                    args.postgres, f"tollway_bench_core_{os.getpid()}", create=True
                ),
            }
            pg_tollway, pg_key = start_tollway(ports, work, pg_env, args.pg_workers, port=ports.tollway_pg)
            processes.append(pg_tollway)
        nginx_workers = children_of(processes[0].pid)

        def direct_url(kind: str) -> str:
            port = ports.slow if kind == "slow" else ports.upstream
            return f"http://127.0.0.1:{port}{'/stream' if kind == 'stream' else ''}/v1/chat/completions"

        def proxy_url(kind: str) -> str:
            prefix = {"slow": "/slow", "stream": "/stream", "fast": ""}[kind]
            return f"http://127.0.0.1:{ports.proxy}{prefix}/v1/chat/completions"

        def floor_url(kind: str) -> str | None:
            return None if kind == "slow" else direct_url(kind).replace(str(ports.upstream), str(ports.floor))

        targets = [
            Target("direct", direct_url, {}, ""),
            Target("nginx", proxy_url, {}, "", pid=nginx_workers[0] if nginx_workers else None),
            Target("floor", floor_url, {}, "", pid=floor.pid),
            Target(
                "tollway",
                lambda _kind: f"http://127.0.0.1:{ports.tollway}/api/v1/chat/completions",
                {"Authorization": f"Bearer {key}"},
                "bench/",
                pid=tollway.pid,
            ),
        ]
        if pg_tollway is not None:
            targets.append(
                Target(
                    "tollway-pg",
                    lambda _kind: f"http://127.0.0.1:{ports.tollway_pg}/api/v1/chat/completions",
                    {"Authorization": f"Bearer {pg_key}"},
                    "bench/",
                    pid=pg_tollway.pid,
                    count_store=True,
                )
            )
        targets = [target for target in targets if target.name in chosen]
        print(
            f"Tollway bench: {os.cpu_count()} cores, {args.duration:.0f} s per closed-loop run, "
            "nginx and wrk on loopback\n"
        )
        results = measure(targets, args.scenarios.split(","), args.duration, work, args.paced)
        print_table(results)
        if not args.core_only:
            for gateway in (tollway, pg_tollway):
                if gateway is not None:
                    gateway.send_signal(signal.SIGTERM)
                    gateway.wait(20)
                    processes.remove(gateway)
            if pg_tollway is not None:
                scratch_database(args.postgres, f"tollway_bench_core_{os.getpid()}", create=False)
                pg_tollway = None
            sqlite_rps = results.get("closed loop, 64 connections", {}).get("tollway", {}).get("rps", 0.0)
            results["extended"] = extended(ports, work, args, sqlite_rps)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        if pg_tollway is not None:
            scratch_database(args.postgres, f"tollway_bench_core_{os.getpid()}", create=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
