"""Auto-recharge settings and the claim that makes one balance dip start exactly one charge.

The claim (`in_flight_payment_id`, taken at `last_charge_at_us`) is released when the charge ends;
if the process holding it dies, it expires after the claim timeout, so auto-recharge never stays
stuck. The dead process's order is settled by asking the provider (see PaymentsService.converge).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.clock import us_to_iso
from tollway.db import tables
from tollway.db.upsert import insert_ignoring_duplicates
from tollway.money import nanos_to_usd

_A = tables.auto_recharge


@dataclass(frozen=True, slots=True)
class AutoRecharge:
    account_id: str
    enabled: bool
    threshold_nanos: int
    amount_nanos: int
    customer_id: str | None
    payment_method_id: str | None
    disabled_reason: str | None
    in_flight_payment_id: str | None
    last_charge_at_us: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "threshold": nanos_to_usd(self.threshold_nanos),
            "amount": nanos_to_usd(self.amount_nanos),
            "has_payment_method": bool(self.customer_id and self.payment_method_id),
            "disabled_reason": self.disabled_reason,
            "charge_in_flight": self.in_flight_payment_id,
            "last_charge_at": us_to_iso(self.last_charge_at_us),
        }


def _from_row(row: Any) -> AutoRecharge:
    return AutoRecharge(
        row.account_id,
        bool(row.enabled),
        row.threshold_nanos,
        row.amount_nanos,
        row.customer_id,
        row.payment_method_id,
        row.disabled_reason,
        row.in_flight_payment_id,
        row.last_charge_at_us,
    )


class AutoRechargeStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, account_id: str) -> AutoRecharge:
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(_A).where(_A.c.account_id == account_id))).first()
        if row is None:
            return AutoRecharge(account_id, False, 0, 0, None, None, None, None, None)
        return _from_row(row)

    async def enabled(self) -> list[AutoRecharge]:
        async with self._engine.connect() as connection:
            rows = (await connection.execute(select(_A).where(_A.c.enabled.is_(True)))).all()
        return [_from_row(row) for row in rows]

    async def save(self, account_id: str, now_us: int, **values: Any) -> AutoRecharge:
        async with self._engine.begin() as connection:
            await connection.execute(
                insert_ignoring_duplicates(_A, connection.dialect.name).values(
                    account_id=account_id, enabled=False, threshold_nanos=0, amount_nanos=0, updated_at_us=now_us
                )
            )
            await connection.execute(
                update(_A).where(_A.c.account_id == account_id).values(updated_at_us=now_us, **values)
            )
        return await self.get(account_id)

    async def claim(
        self, account_id: str, payment_id: str, now_us: int, min_interval_us: int, claim_timeout_us: int
    ) -> bool:
        """Take the one charge slot: only one process, and one settlement, wins per interval.

        A claim older than `claim_timeout_us` belongs to a process that died mid-charge: it is taken over.
        """
        async with self._engine.begin() as connection:
            result = await connection.execute(
                update(_A)
                .where(
                    _A.c.account_id == account_id,
                    _A.c.enabled.is_(True),
                    or_(_A.c.in_flight_payment_id.is_(None), _A.c.last_charge_at_us <= now_us - claim_timeout_us),
                    or_(_A.c.last_charge_at_us.is_(None), _A.c.last_charge_at_us <= now_us - min_interval_us),
                )
                .values(in_flight_payment_id=payment_id, last_charge_at_us=now_us, updated_at_us=now_us)
            )
        return bool(result.rowcount)

    async def finish(self, account_id: str, payment_id: str, now_us: int, failure: str | None) -> None:
        """The charge ended; a decline (`failure`) disables auto-recharge until the owner turns it on again."""
        values: dict[str, Any] = {"in_flight_payment_id": None, "updated_at_us": now_us}
        if failure is not None:
            values.update(enabled=False, disabled_reason=failure)
        async with self._engine.begin() as connection:
            await connection.execute(
                update(_A)
                .where(_A.c.account_id == account_id, _A.c.in_flight_payment_id == payment_id)
                .values(**values)
            )
