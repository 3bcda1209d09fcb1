"""`tollway balance ACCOUNT_ID --explain` and `tollway whoami --key K`: /balance's answer, from the database.

Limit usage comes from Redis when TOLLWAY_REDIS_URL is set; the in-process limiter's counters live in
the server, so without Redis the CLI shows the limits but not their live usage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tollway.auth.keys import hash_key
from tollway.clock import SystemClock
from tollway.errors import NotFound

if TYPE_CHECKING:
    from tollway.auth.records import KeyRecord
    from tollway.balance import BalanceService
    from tollway.cli.common import AdminContext
    from tollway.limits.service import RateLimiter
    from tollway.routing.catalog import Catalog


async def balance_service(context: AdminContext) -> tuple[BalanceService, RateLimiter, Catalog]:
    """The server's balance report over the database (and Redis when set); close the limiter's backend after."""
    # Imported here, not at the top: they load most of the server, which `balance` without --explain does not need.
    from tollway.balance import BalanceService, PendingPayment
    from tollway.payments.model import PaymentStatus
    from tollway.payments.service import _PENDING_VISIBLE_US as PENDING_VISIBLE_US
    from tollway.payments.store import PaymentStore
    from tollway.providers.http_client import UpstreamPool
    from tollway.refusals import RefusalLog
    from tollway.routing.build import build_catalog
    from tollway.services import build_limiter

    clock = SystemClock()
    engine = context.accounts.store.engine
    limiter = build_limiter(context.settings, engine, clock)
    await limiter.rules.refresh()
    catalog, _providers = build_catalog(context.settings, UpstreamPool())  # prices only: nothing is sent
    payments = PaymentStore(engine)

    async def pending(account_id: str) -> list[PendingPayment]:
        """Pending payments as the server lists them (PaymentsService.pending, without its providers)."""
        now_us = clock.now_us()
        return [
            PendingPayment(p.id, p.amount_nanos, p.method, p.created_at_us, p.note or "waiting for the payment")
            for p in await payments.for_account(account_id)
            if p.status is PaymentStatus.PENDING and now_us - p.created_at_us < PENDING_VISIBLE_US
        ]

    service = BalanceService(
        context.ledger,
        limiter,
        RefusalLog(engine),
        catalog,
        clock,
        pending=pending,
        min_affordable_tokens=context.settings.min_affordable_tokens,
        live_limits=context.settings.redis_url is not None,
    )
    return service, limiter, catalog


async def balance_reports(context: AdminContext, keys: list[KeyRecord]) -> list[dict[str, Any]]:
    service, limiter, _catalog = await balance_service(context)
    try:
        return [{"key_hash": key.hash, **await service.report(key)} for key in keys]
    finally:
        await limiter.backend.close()


async def account_reports(context: AdminContext, account_id: str) -> list[dict[str, Any]]:
    await context.accounts.require_account(account_id)
    keys = [k for k in await context.accounts.store.keys_for_account(account_id) if not k.is_management]
    return await balance_reports(context, keys)


async def whoami_report(context: AdminContext, plain_key: str) -> dict[str, Any]:
    record = await context.accounts.store.key_by_hash(hash_key(plain_key.strip()))
    if record is None or record.deleted_at_us is not None:
        raise NotFound("No such key: it is unknown or deleted")
    account = await context.accounts.require_account(record.account_id)
    report = (await balance_reports(context, [record]))[0]
    return {"account_id": account.id, "email": account.email, **report}


def report_text(report: dict[str, Any]) -> str:
    key = report["key"]
    cap = "no cap" if key["limit"] is None else f"cap {key['limit']} USD ({key['limit_reset'] or 'total'})"
    lines = [f"key {key['label']} ({key['name']}, {cap}): {report['summary']}"]
    lines += [f"  - [{e['code']}] {e['message']}" for e in report["explanations"][1:]]
    lines.append(f"  spendable now: {report['spendable_now']} USD")
    return "\n".join(lines)
