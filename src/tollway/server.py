"""Runs the gateway: one process, or N supervised worker processes sharing one listening socket."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import time

from aiohttp import web

from tollway import tracing
from tollway.app import build_app
from tollway.db.engine import create_engine
from tollway.db.migrations import check_schema
from tollway.logs import configure_logging
from tollway.services import build_services
from tollway.settings import Settings

log = logging.getLogger("tollway")

_PR_SET_PDEATHSIG = 1
_CHECK_INTERVAL_S = 0.2
# A worker stopping on SIGTERM drains its ledger writes; one still running after this is killed, so
# the whole stop takes at most about this long.
_STOP_GRACE_S = 8.0
_CRASH_WINDOW_S = 60.0
_CRASH_LIMIT = 10
_CRASH_BACKOFF_S = 2.0


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(settings: Settings, sock: socket.socket | None) -> None:
    if tracing.start(settings):  # per process: a forked worker starts its own exporter thread
        log.info("tracing", extra={"endpoint": tracing.traces_endpoint(settings)})
    services = await build_services(settings)
    app = build_app(services)
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("tollway.access") if settings.access_log else None,
        handle_signals=False,
    )
    await runner.setup()
    if sock is None:
        site: web.BaseSite = web.TCPSite(runner, settings.host, settings.port, backlog=2048, reuse_address=True)
    else:
        site = web.SockSite(runner, sock, backlog=2048)
    await site.start()
    # Everything loaded so far (libraries, catalog, caches) lives as long as the process: moved out of the
    # collector's sight, a full collection scans only what requests allocate (40 ms pauses became 2 ms).
    gc.collect()
    gc.freeze()
    log.info(
        "serving",
        extra={
            "address": f"http://{settings.host}:{settings.port}",
            "pid": os.getpid(),
            "database": services.engine.dialect.name,
            "models": len(services.catalog.models()),
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
    tracing.stop()  # sends the spans still buffered


def _die_with_parent() -> None:
    """Linux: the kernel sends this worker SIGTERM if the supervisor dies, even by SIGKILL (no orphans)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's own shutdown still stops every worker
        return


def _run_worker(settings: Settings, sock: socket.socket | None) -> None:
    if sock is not None:
        # A forked worker starts with the supervisor's handlers; its own come with its event loop.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _die_with_parent()
    configure_logging(settings.log_level)
    _install_uvloop()
    asyncio.run(_serve(settings, sock))


async def _migrate_once(settings: Settings) -> list[str]:
    engine = create_engine(settings.database_url)
    try:
        return await check_schema(engine, settings.auto_migrate)
    finally:
        await engine.dispose()


def run(settings: Settings) -> None:
    if settings.workers <= 1:
        _run_worker(settings, None)
        return
    configure_logging(settings.log_level)
    # Migrated here, once, before any worker starts: workers never race to create tables.
    applied = asyncio.run(_migrate_once(settings))
    if applied:
        log.info("database migrated", extra={"applied": applied})
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    Supervisor(settings, sock).run()


class Supervisor:
    """Keeps `workers` processes serving one socket: replaces a worker that dies, stops them all on SIGTERM.

    Stopping is bounded: SIGTERM to every worker (each drains and closes), SIGKILL to any still
    running after `_STOP_GRACE_S`; the supervisor exits once all are gone.
    """

    def __init__(self, settings: Settings, sock: socket.socket) -> None:
        self._settings = settings
        self._sock = sock
        self._context = multiprocessing.get_context("fork")
        self._workers: list[multiprocessing.process.BaseProcess] = []
        self._stopping = False
        self._recent_deaths: list[float] = []

    def _start_worker(self) -> multiprocessing.process.BaseProcess:
        worker = self._context.Process(target=_run_worker, args=(self._settings, self._sock), name="tollway-worker")
        worker.start()
        return worker

    def _request_stop(self, signum: int, _frame: object) -> None:
        self._stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        self._workers = [self._start_worker() for _ in range(self._settings.workers)]
        log.info("supervising", extra={"pid": os.getpid(), "workers": [w.pid for w in self._workers]})
        while not self._stopping:
            self._replace_dead()
            time.sleep(_CHECK_INTERVAL_S)
        self._stop_all()

    def _replace_dead(self) -> None:
        for index, worker in enumerate(self._workers):
            if worker.is_alive() or self._stopping:
                continue
            worker.join(0)
            now = time.monotonic()
            self._recent_deaths = [t for t in self._recent_deaths if now - t < _CRASH_WINDOW_S] + [now]
            log.error(
                "worker died; starting a new one",
                extra={"pid": worker.pid, "exit_code": worker.exitcode, "deaths_last_minute": len(self._recent_deaths)},
            )
            if len(self._recent_deaths) > _CRASH_LIMIT:
                time.sleep(_CRASH_BACKOFF_S)  # crashing in a loop (bad config, database away): do not spin
                if self._stopping:
                    return
            self._workers[index] = self._start_worker()
            log.info("worker started", extra={"pid": self._workers[index].pid})

    def _stop_all(self) -> None:
        log.info("stopping workers", extra={"workers": [w.pid for w in self._workers if w.is_alive()]})
        for worker in self._workers:
            if worker.is_alive() and worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        for worker in self._workers:
            if worker.is_alive() and worker.pid:
                log.error("worker did not stop in time; killing it", extra={"pid": worker.pid})
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)
        for worker in self._workers:
            worker.join(5)
        self._sock.close()
        log.info("stopped")
