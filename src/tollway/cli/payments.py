"""`tollway payments list|refund` and `tollway auto-recharge show|set`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tollway.cli.common import AdminContext, DatabaseUrlOption, JsonOption, emit, run_admin
from tollway.clock import SystemClock

# Payments, the ledger and aiohttp are imported where a command runs: `tollway --help` loads this module too.

payments_app = typer.Typer(help="List and refund payments.", no_args_is_help=True)
auto_app = typer.Typer(help="Show and set auto-recharge of an account.", no_args_is_help=True)


@payments_app.command("list")
def payments_list(account_id: str, database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """An account's purchases: status, amount, fee, method, times."""
    from tollway.payments.store import PaymentStore

    async def action(context: AdminContext) -> list[dict[str, Any]]:
        await context.accounts.require_account(account_id)
        return [p.as_dict() for p in await PaymentStore(context.accounts.store.engine).for_account(account_id)]

    rows = run_admin(database_url, as_json, action)
    emit(
        rows,
        as_json,
        "\n".join(
            f"{r['id']}  {r['status']:<18} {r['amount']:>10.2f} USD  fee {r['fee']:.2f}  {r['method']}  "
            f"{r['created_at']}"
            for r in rows
        )
        or "no payments",
    )


@payments_app.command("refund")
def payments_refund(
    payment_id: str,
    amount: Annotated[str | None, typer.Option("--amount", help="USD to refund (default: all that is left).")] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Refund a card payment within the refund window; credits are debited when Stripe confirms it."""
    import aiohttp

    from tollway.audit import CLI, AuditLog
    from tollway.ledger.book import AccountBook
    from tollway.ledger.service import Ledger
    from tollway.ledger.writer import LedgerWriter
    from tollway.metrics import Metrics
    from tollway.services import build_payments

    async def action(context: AdminContext) -> dict[str, Any]:
        engine = context.accounts.store.engine
        clock = SystemClock()
        store = context.ledger.store
        book = AccountBook(store, "cli")
        ledger = Ledger(store, book, LedgerWriter(store, "cli", 1, 1.0), clock, 16)
        async with aiohttp.ClientSession() as session:
            service = build_payments(context.settings, engine, session, ledger, clock, Metrics())
            before = await service.store.get(payment_id)
            payment = await service.refund(payment_id, amount)
        await AuditLog(engine).record(
            CLI,
            "payment.refund",
            payment.account_id,
            payment_id,
            {"status": before.status.value, "refunded_cents": before.refunded_cents} if before else None,
            {"status": payment.status.value, "refunded_cents": payment.refunded_cents, "refund_usd": amount or "rest"},
        )
        return {"refund_requested": True, "payment": payment.as_dict()}

    result = run_admin(database_url, as_json, action)
    emit(result, as_json, f"refund of {payment_id} requested; credits are debited when Stripe confirms it")


@auto_app.command("show")
def auto_show(account_id: str, database_url: DatabaseUrlOption = None, as_json: JsonOption = False) -> None:
    """Auto-recharge settings of an account, and why it was turned off, if it was."""
    from tollway.payments.auto_recharge import AutoRechargeStore

    async def action(context: AdminContext) -> dict[str, Any]:
        await context.accounts.require_account(account_id)
        return (await AutoRechargeStore(context.accounts.store.engine).get(account_id)).as_dict()

    result = run_admin(database_url, as_json, action)
    emit(result, as_json, "\n".join(f"{name}: {value}" for name, value in result.items()))


@auto_app.command("set")
def auto_set(
    account_id: str,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    threshold: Annotated[str | None, typer.Option("--threshold", help="Recharge when the balance falls below.")] = None,
    amount: Annotated[str | None, typer.Option("--amount", help="USD of credits each recharge adds.")] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Stripe customer id.")] = None,
    payment_method: Annotated[str | None, typer.Option("--payment-method", help="Stripe payment method id.")] = None,
    database_url: DatabaseUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change auto-recharge of an account (the account owner's decision; a failed charge turns it off)."""
    from tollway.accounts import parse_usd
    from tollway.audit import CLI, AuditLog, auto_recharge_state
    from tollway.payments.auto_recharge import AutoRechargeStore

    async def action(context: AdminContext) -> dict[str, Any]:
        await context.accounts.require_account(account_id)
        values: dict[str, Any] = {}
        if threshold is not None:
            values["threshold_nanos"] = parse_usd(threshold, "threshold")
        if amount is not None:
            values["amount_nanos"] = parse_usd(amount, "amount", allow_zero=False)
        if customer is not None:
            values["customer_id"] = customer
        if payment_method is not None:
            values["payment_method_id"] = payment_method
        if enabled is not None:
            values["enabled"] = enabled
            if enabled:
                values["disabled_reason"] = None
        store = AutoRechargeStore(context.accounts.store.engine)
        before = await store.get(account_id)
        saved = await store.save(account_id, SystemClock().now_us(), **values)
        await AuditLog(context.accounts.store.engine).record(
            CLI, "auto_recharge.update", account_id, account_id, auto_recharge_state(before), auto_recharge_state(saved)
        )
        return saved.as_dict()

    result = run_admin(database_url, as_json, action)
    emit(result, as_json, "\n".join(f"{name}: {value}" for name, value in result.items()))
