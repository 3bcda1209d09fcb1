"""Everything stateful the server needs, built at start-up and passed in (nothing lives at module level)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.accounts import AccountsService
from tollway.api.addresses import ClientAddresses
from tollway.audit import AuditLog
from tollway.auth.cache import KeyCache
from tollway.auth.store import AccountStore
from tollway.auth.throttle import FailureThrottle
from tollway.balance import BalanceService
from tollway.changes import notifications as topics
from tollway.changes.follower import ChangeFollower
from tollway.changes.notifications import ChangeNotifications
from tollway.clock import Clock, SystemClock
from tollway.dashboard.activity import ActivityStore
from tollway.dashboard.guard import LoginThrottle
from tollway.dashboard.users import UserStore
from tollway.db.engine import create_engine, driver_dsn, is_sqlite
from tollway.db.migrations import check_schema
from tollway.gateway.chat import ChatGateway, PromptAllowances
from tollway.gateway.embeddings import EmbeddingsGateway
from tollway.ledger.book import AccountBook, Book
from tollway.ledger.catch_up import LedgerCatchUp
from tollway.ledger.redis_book import RedisBook
from tollway.ledger.service import Ledger
from tollway.ledger.sink import BatchSink, sink_for
from tollway.ledger.spool import Spool, default_spool_dir
from tollway.ledger.store import LedgerStore
from tollway.ledger.writer import LedgerWriter
from tollway.limits.backend import LimiterBackend
from tollway.limits.config import LimitSpec
from tollway.limits.memory import MemoryLimiter
from tollway.limits.redis_backend import RedisLimiter
from tollway.limits.service import FreeTier, LimitRules, RateLimiter
from tollway.limits.store import LimitStore
from tollway.metrics import Metrics
from tollway.money import usd_to_nanos
from tollway.payments.auto_recharge import AutoRechargeStore
from tollway.payments.crypto_provider import CryptoProvider
from tollway.payments.model import fee_rules
from tollway.payments.provider import PaymentProvider
from tollway.payments.service import CheckoutLimits, PaymentsService
from tollway.payments.store import PaymentStore
from tollway.providers.base import Provider
from tollway.providers.http_client import UpstreamPool
from tollway.refusals import RefusalLog
from tollway.routing.build import build_catalog
from tollway.routing.catalog import Catalog
from tollway.routing.health import HealthBoard
from tollway.routing.sessions import StickySessions
from tollway.settings import Settings

log = logging.getLogger("tollway")

# PostgreSQL hands out ids before commit; the poll watermark trails by this much there.
_POSTGRES_COMMIT_LAG_S = 5.0


@dataclass
class Services:
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    http: aiohttp.ClientSession
    upstream: UpstreamPool
    accounts: AccountsService
    keys: KeyCache
    ledger: Ledger
    changes: ChangeFollower
    notifications: ChangeNotifications | None
    catalog: Catalog
    providers: dict[str, Provider]
    gateway: ChatGateway
    limiter: RateLimiter
    refusals: RefusalLog
    balance: BalanceService
    metrics: Metrics
    payments: PaymentsService
    users: UserStore
    audit: AuditLog
    activity: ActivityStore
    embeddings: EmbeddingsGateway
    sink: BatchSink
    client_addresses: ClientAddresses
    dashboard_secret: bytes = b""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        configured = self.settings.secret_key.get_secret_value() if self.settings.secret_key else None
        self.dashboard_secret = await self.users.secret(configured)
        await self.keys.start()
        await self.ledger.recover_spool()  # settlements a dead process answered but never committed
        await self.ledger.book.start()
        self.tasks.append(asyncio.create_task(self.ledger.writer.run(), name="ledger-writer"))
        self.tasks.append(asyncio.create_task(self.ledger.book.maintain(), name="hold-upkeep"))
        renew_every_s = max(0.1, self.settings.hold_ttl_seconds / 3)
        self.tasks.append(asyncio.create_task(self.limiter.maintain(renew_every_s), name="slot-upkeep"))
        if is_sqlite(self.engine):  # PostgreSQL checkpoints on its own: no timer waking the process 4 times a second
            self.tasks.append(asyncio.create_task(self.ledger.writer.checkpoints(), name="ledger-checkpoints"))
        self.tasks.append(asyncio.create_task(self.refusals.run(), name="refusal-log"))
        await self.payments.refresh_auto_recharge()
        following = self.changes.run(
            self.settings.ledger_poll_interval_seconds,
            self.notifications,
            self.settings.ledger_safety_poll_seconds,
            changed=self.ledger.store.changed_elsewhere,
        )
        self.tasks.append(asyncio.create_task(following, name="change-follower"))

    async def stop(self) -> None:
        drained = await self.ledger.writer.drain(timeout_s=10)
        if not drained:
            spooled = self.ledger.writer.spool_queued()
            log.error("shutting down with unwritten ledger entries; spooled for replay", extra={"queued": spooled})
        if not await self.ledger.book_replies.drain(timeout_s=5):
            log.error("shutting down before redis answered some settlements; their holds expire and reload")
        with contextlib.suppress(Exception):
            await self.refusals.flush()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.http.close()
        await self.upstream.close()
        await self.limiter.backend.close()
        await self.gateway.sessions.close()
        if isinstance(self.ledger.book, RedisBook):
            await self.ledger.book.close()
        await self.sink.close()
        if self.ledger.writer.spool is not None:
            self.ledger.writer.spool.close()
        self.users.hashing.close()
        await self.engine.dispose()


def build_limiter(settings: Settings, engine: AsyncEngine, clock: Clock) -> RateLimiter:
    backend: LimiterBackend = (
        RedisLimiter(settings.redis_url, settings.hold_ttl_seconds) if settings.redis_url else MemoryLimiter()
    )
    rules = LimitRules(
        LimitStore(engine),
        LimitSpec.from_defaults(settings.key_limits),
        LimitSpec.from_defaults(settings.account_limits),
    )
    free = FreeTier(
        per_minute=settings.free_requests_per_minute,
        per_day=settings.free_requests_per_day,
        per_day_unlocked=settings.free_requests_per_day_unlocked,
        unlock_purchased_nanos=usd_to_nanos(settings.free_unlock_purchased_usd),
    )
    return RateLimiter(backend, rules, free, clock, settings.rate_limit_fail_open)


def build_payments(
    settings: Settings,
    engine: AsyncEngine,
    http: aiohttp.ClientSession,
    ledger: Ledger,
    clock: Clock,
    metrics: Metrics,
) -> PaymentsService:
    providers: dict[str, PaymentProvider] = {}
    if settings.stripe_secret_key and settings.stripe_webhook_secret:
        # Imported only where Stripe is configured: the library takes longer to import than the rest of the
        # CLI's start, which every command pays.
        from tollway.payments.stripe_provider import StripeProvider

        providers["stripe"] = StripeProvider(
            settings.stripe_secret_key.get_secret_value(),
            settings.stripe_webhook_secret.get_secret_value(),
            settings.stripe_api_base,
            settings.checkout_success_url,
            settings.checkout_cancel_url,
            settings.webhook_tolerance_seconds,
        )
    if settings.crypto_api_key and settings.crypto_webhook_secret:
        providers["crypto"] = CryptoProvider(
            settings.crypto_api_key.get_secret_value(),
            settings.crypto_webhook_secret.get_secret_value(),
            settings.crypto_api_base,
            http,
        )
    limits = CheckoutLimits(
        min_nanos=usd_to_nanos(settings.checkout_min_usd),
        max_nanos=usd_to_nanos(settings.checkout_max_usd),
        refund_window_us=int(settings.refund_window_hours * 3600 * 1_000_000),
        auto_recharge_interval_us=int(settings.auto_recharge_min_interval_seconds * 1_000_000),
        auto_recharge_claim_timeout_us=int(settings.auto_recharge_claim_timeout_seconds * 1_000_000),
        fees=fee_rules(settings),
    )
    return PaymentsService(PaymentStore(engine), AutoRechargeStore(engine), providers, ledger, clock, limits, metrics)


async def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock(offset_us=int(settings.clock_offset_seconds * 1_000_000))
    engine = create_engine(settings.database_url)
    applied = await check_schema(engine, settings.auto_migrate)  # a worker of a supervisor finds it done
    if applied:
        log.info("database migrated", extra={"applied": applied})
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300),
        skip_auto_headers=("User-Agent",),
    )
    origin = uuid.uuid4().hex
    sink = sink_for(settings.database_url, settings.sqlite_synchronous)
    ledger_store = LedgerStore(engine, sink)
    book: Book = (
        RedisBook(ledger_store, origin, settings.redis_url, settings.hold_ttl_seconds)
        if settings.redis_url
        else AccountBook(ledger_store, origin)
    )
    log.info("balances", extra={"book": "redis" if settings.redis_url else "memory"})
    spool = Spool(settings.spool_path or default_spool_dir(settings.database_url), origin)
    writer = LedgerWriter(
        ledger_store, origin, settings.ledger_queue_limit, settings.ledger_flush_timeout_seconds, spool
    )
    ledger = Ledger(ledger_store, book, writer, clock, settings.min_affordable_tokens)
    account_store = AccountStore(engine)
    keys = KeyCache(
        account_store,
        unknown_limit=settings.unknown_key_cache_size,
        throttle=FailureThrottle(settings.auth_failures_per_minute, settings.auth_failures_burst),
    )
    lag = 0.0 if is_sqlite(engine) else _POSTGRES_COMMIT_LAG_S
    upstream = UpstreamPool(
        max_response_bytes=settings.max_response_bytes,
        max_line_bytes=settings.max_sse_line_bytes,
        idle_timeout_s=settings.upstream_idle_timeout_seconds,
        first_byte_timeout_s=settings.upstream_first_byte_timeout_seconds,
    )
    catalog, providers = build_catalog(settings, upstream)
    limiter = build_limiter(settings, engine, clock)
    catch_up = LedgerCatchUp(ledger_store, book, clock, commit_lag_s=lag)
    changes = ChangeFollower()
    changes.add_step(catch_up.catch_up, topics.LEDGER)
    changes.add_step(keys.refresh, topics.REVISION)
    changes.add_step(limiter.rules.refresh, topics.REVISION)
    # Settlements send no notification (one per batch would wake every process), so a book that counts other
    # processes' usage (PostgreSQL without Redis) keeps polling every interval.
    notifications = (
        ChangeNotifications(driver_dsn(settings.database_url))
        if not is_sqlite(engine) and not book.counts_external_usage
        else None
    )
    log.info("rate limits", extra={"backend": limiter.backend.name, "fail_open": settings.rate_limit_fail_open})
    refusals = RefusalLog(engine, settings.refusal_history_per_account)
    metrics = Metrics()
    metrics.track_holds(lambda: book.open_hold_count)
    payments = build_payments(settings, engine, http, ledger, clock, metrics)
    audit = payments.audit = AuditLog(engine, clock)
    changes.add_step(payments.refresh_auto_recharge, topics.AUTO_RECHARGE)
    changes.add_step(payments.converge)  # a sweep every few seconds, whatever was notified
    gateway = ChatGateway(
        catalog,
        ledger,
        limiter,
        clock,
        metrics,
        HealthBoard(clock),
        providers.keys(),
        allowances=PromptAllowances(settings.image_prompt_tokens, settings.file_page_prompt_tokens),
        sessions=StickySessions(clock, redis_url=settings.redis_url),
    )

    async def watch_balance(account_id: str) -> None:
        if payments.watches(account_id):
            payments.after_settlement(account_id, (await ledger.account_figures(account_id)).balance_nanos)

    gateway.settlement_listeners.append(watch_balance)
    return Services(
        settings=settings,
        clock=clock,
        engine=engine,
        http=http,
        upstream=upstream,
        accounts=AccountsService(account_store, ledger, clock),
        keys=keys,
        ledger=ledger,
        changes=changes,
        notifications=notifications,
        catalog=catalog,
        providers=providers,
        gateway=gateway,
        payments=payments,
        users=UserStore(
            engine, throttle=LoginThrottle(settings.login_failures_per_minute, settings.login_failures_burst)
        ),
        audit=audit,
        embeddings=EmbeddingsGateway(catalog, ledger, limiter, gateway, clock),
        activity=ActivityStore(engine),
        metrics=metrics,
        limiter=limiter,
        refusals=refusals,
        balance=BalanceService(
            ledger,
            limiter,
            refusals,
            catalog,
            clock,
            pending=payments.pending,
            min_affordable_tokens=settings.min_affordable_tokens,
        ),
        sink=sink,
        client_addresses=ClientAddresses(settings.trusted_proxies),
    )
