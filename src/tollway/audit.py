"""The audit log: who changed what (before → after) and when, for keys, caps, limits, auto-recharge, saved cards,
grants, refunds and users. Append-only: this module only inserts, and the database refuses updates and deletes.

Entries are written where the changes happen (the API edge, the dashboard, the CLI, the payments service), each
naming its actor: an API key (by hash), a dashboard user, the CLI, the admin API or a payment provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.clock import Clock, SystemClock, us_to_iso
from tollway.db import tables

if TYPE_CHECKING:
    from tollway.auth.records import KeyRecord
    from tollway.ledger.records import LedgerEntry
    from tollway.limits.config import LimitSpec
    from tollway.payments.auto_recharge import AutoRecharge

_A = tables.audit_log
MAX_PAGE = 200

State = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: kind is key, user, cli, admin_api, payment_provider or system."""

    kind: str
    id: str | None = None
    email: str | None = None

    @classmethod
    def key(cls, record: KeyRecord) -> Actor:
        return cls("key", record.hash)

    @classmethod
    def user(cls, user_id: str, email: str) -> Actor:
        return cls("user", user_id, email)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.kind}
        if self.id is not None:
            body["id"] = self.id
        if self.email is not None:
            body["email"] = self.email
        return body


CLI = Actor("cli")
ADMIN_API = Actor("admin_api")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    account_id: str | None
    at_us: int
    actor: Actor
    action: str
    target: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account_id": self.account_id,
            "at": us_to_iso(self.at_us),
            "actor": self.actor.as_dict(),
            "action": self.action,
            "target": self.target,
            "before": self.before,
            "after": self.after,
        }


def _dump(state: State | None) -> str | None:
    return None if state is None else orjson.dumps(dict(state), option=orjson.OPT_SORT_KEYS).decode()


def _load(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    loaded = orjson.loads(text)
    return loaded if isinstance(loaded, dict) else {"value": loaded}


class AuditLog:
    def __init__(self, engine: AsyncEngine, clock: Clock | None = None) -> None:
        self._engine = engine
        self._clock = clock or SystemClock()

    async def record(
        self,
        actor: Actor,
        action: str,
        account_id: str | None,
        target: str | None,
        before: State | None = None,
        after: State | None = None,
    ) -> None:
        """Append one entry; a change that changed nothing (before == after) is not recorded."""
        if before is not None and after is not None and dict(before) == dict(after):
            return
        async with self._engine.begin() as connection:
            await connection.execute(
                _A.insert().values(
                    account_id=account_id,
                    at_us=self._clock.now_us(),
                    actor_kind=actor.kind,
                    actor_id=actor.id,
                    actor_email=actor.email,
                    action=action,
                    target=target,
                    before_json=_dump(before),
                    after_json=_dump(after),
                )
            )

    async def entries(self, account_id: str | None, limit: int = 50, offset: int = 0) -> list[AuditEntry]:
        """Newest first; one account's entries, or every entry when account_id is None (admins)."""
        query = select(_A).order_by(_A.c.id.desc()).limit(max(1, min(limit, MAX_PAGE))).offset(max(0, offset))
        if account_id is not None:
            query = query.where(_A.c.account_id == account_id)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            AuditEntry(
                int(row.id),
                row.account_id,
                int(row.at_us),
                Actor(row.actor_kind, row.actor_id, row.actor_email),
                row.action,
                row.target,
                _load(row.before_json),
                _load(row.after_json),
            )
            for row in rows
        ]


def key_state(record: KeyRecord | None) -> dict[str, Any] | None:
    """What an audit entry shows of a key (never its secret: the hash names it)."""
    if record is None:
        return None
    return {
        "name": record.name,
        "label": record.label,
        "management": record.is_management,
        "disabled": record.disabled,
        "limit_nanos": record.limit_nanos,
        "limit_reset": record.limit_reset.value if record.limit_reset is not None else None,
        "include_byok_in_limit": record.include_byok_in_limit,
        "expires_at": us_to_iso(record.expires_at_us),
        "deleted": record.deleted_at_us is not None,
    }


def limit_state(spec: LimitSpec) -> dict[str, Any]:
    return {
        "requests": spec.requests,
        "per": spec.period.value if spec.period else None,
        "tokens_per_minute": spec.tokens_per_minute,
        "concurrency": spec.concurrency,
    }


def auto_recharge_state(config: AutoRecharge) -> dict[str, Any]:
    """Settings and the saved card (the provider's ids, not card data); not the charge bookkeeping."""
    return {
        "enabled": config.enabled,
        "threshold_nanos": config.threshold_nanos,
        "amount_nanos": config.amount_nanos,
        "customer_id": config.customer_id,
        "payment_method_id": config.payment_method_id,
    }


def entry_state(entry: LedgerEntry) -> dict[str, Any]:
    """A credit written by hand (grant, purchase recorded by an admin) as the audit shows it."""
    return {"entry_id": entry.id, "kind": entry.kind.value, "amount_nanos": entry.amount_nanos, "reason": entry.reason}
