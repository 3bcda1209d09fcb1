"""A/B of two versions of Tollway on one machine: both gateways run side by side behind the same fake upstream,
and short wrk runs alternate between them, so whatever else the machine does weighs on both alike.

Usage: python bench/ab.py BEFORE_SRC [--models bench/stream,bench/fast] [--reps 4] [--duration 3] [--redis]
       [--postgres] [--paced 200]
BEFORE_SRC is the `src` folder of another checkout (e.g. `git worktree add /tmp/before <commit>`); the
current checkout is B. Prints the median req/s and gateway CPU per request of each, per model; with
`--paced N`, the unloaded case instead (N requests one every 20 ms, as bench/run.py's): median p50 and p99.
`--postgres` puts each gateway on a scratch database of its own (with `--redis`: the production mode).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before_src", help="the src folder of the checkout to compare with (A)")
    parser.add_argument("--models", default="bench/stream,bench/fast")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--redis", action="store_true", help="both gateways on a redis-server of the run's own")
    parser.add_argument("--postgres", action="store_true", help="each gateway on a scratch PostgreSQL database")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--paced", type=int, default=0, help="unloaded runs of this many requests instead of wrk")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tollway-ab-"))
    work.chmod(0o755)  # nginx's workers read the stream body from it
    ports = run.Ports()
    (work / "nginx.conf").write_text(run.nginx_config(ports, work))
    (work / "stream.sse").write_text(run.STREAM_BODY)
    upstreams = [
        subprocess.Popen(["nginx", "-c", str(work / "nginx.conf"), "-p", str(work), "-g", "daemon off;"]),
        subprocess.Popen([run.PYTHON, str(run.ROOT / "bench" / "slow_upstream.py"), "--port", str(ports.slow)]),
    ]
    gateways: dict[str, tuple[subprocess.Popen[bytes], int, str]] = {}
    shared: dict[str, str] = {}
    try:
        run.wait_http(f"http://127.0.0.1:{ports.upstream}/")
        if args.redis:
            shared["TOLLWAY_REDIS_URL"] = run.start_own_redis(upstreams)
        for name, src in (("A", args.before_src), ("B", None)):
            ports.tollway = run.free_port()
            saved = os.environ.get("PYTHONPATH")
            if src is not None:
                os.environ["PYTHONPATH"] = src
            database = f"sqlite:///{work / name}.db"
            if args.postgres:
                database = run.scratch_database(args.postgres_url, f"tollway_ab_{name}_{os.getpid()}", create=True)
            try:
                process, key = run.start_tollway(ports, work, {"TOLLWAY_DATABASE_URL": database, **shared})
            finally:
                if saved is None:
                    os.environ.pop("PYTHONPATH", None)
                else:
                    os.environ["PYTHONPATH"] = saved
            gateways[name] = (process, ports.tollway, key)
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for model in args.models.split(","):
            payload = {
                "model": model,
                "max_tokens": 64,
                "stream": model.endswith("stream"),
                "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
            }
            for rep in range(args.reps):
                order = ("A", "B") if rep % 2 == 0 else ("B", "A")
                for name in order:
                    process, port, key = gateways[name]
                    url = f"http://127.0.0.1:{port}/api/v1/chat/completions"
                    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
                    if args.paced:
                        paced = run.run_paced(url, headers, json.dumps(payload), args.paced, 0.02)
                        figures.setdefault((model, name), []).append((paced["p50_ms"], paced["p99_ms"]))
                        continue
                    before = run.process_cpu_seconds(process.pid)
                    result = run.run_wrk(url, headers, json.dumps(payload), args.connections, args.duration, work)
                    cpu_ms = (run.process_cpu_seconds(process.pid) - before) * 1000 / max(result["requests"], 1)
                    figures.setdefault((model, name), []).append((result["rps"], cpu_ms))
        for (model, name), values in sorted(figures.items()):
            first = statistics.median(v[0] for v in values)
            second = statistics.median(v[1] for v in values)
            if args.paced:
                runs = [(round(v[0], 3), round(v[1], 3)) for v in values]
                print(f"{model:14} {name}  unloaded p50 {first:.3f} ms  p99 {second:.3f} ms  (runs: {runs})")
            else:
                runs_cpu = [round(v[1], 3) for v in values]
                print(f"{model:14} {name}  req/s {first:8.0f}  CPU ms/req {second:.3f}  (runs: {runs_cpu})")
    finally:
        for process, _port, _key in gateways.values():
            process.terminate()
        for process in upstreams:
            process.terminate()
        if args.postgres:
            for name in gateways:
                run.scratch_database(args.postgres_url, f"tollway_ab_{name}_{os.getpid()}", create=False)


if __name__ == "__main__":
    main()
