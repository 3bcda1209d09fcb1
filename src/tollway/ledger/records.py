"""Plain records of money movements and generations; no I/O here (key and account records live in `auth.records`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EntryKind(StrEnum):
    GRANT = "grant"
    PURCHASE = "purchase"
    USAGE = "usage"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One append-only money movement. Positive usage spends; other kinds add (or, negative, remove) credits."""

    account_id: str
    kind: EntryKind
    amount_nanos: int
    created_at_us: int
    key_id: str | None = None
    generation_id: str | None = None
    reference: str | None = None
    reason: str | None = None
    id: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    provider_name: str
    status: int
    latency_ms: int
    model: str
    endpoint_id: str


@dataclass(slots=True)
class GenerationRecord:
    id: str
    account_id: str
    key_id: str | None
    model: str
    provider_name: str | None
    created_at_us: int
    upstream_id: str | None = None
    tokens_prompt: int = 0
    tokens_completion: int = 0
    tokens_reasoning: int = 0
    tokens_cached: int = 0
    cost_nanos: int = 0
    latency_ms: int | None = None
    generation_time_ms: int | None = None
    streamed: bool = False
    cancelled: bool = False
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    status: int = 200
    api_type: str = "completions"
    external_user: str | None = None
    user_agent: str | None = None
    http_referer: str | None = None
    max_tokens_capped: int | None = None
    provider_responses: list[AttemptRecord] = field(default_factory=list)
    tokens_cache_write: int = 0  # of tokens_prompt, written to the provider's cache (1-hour writes included)
    tokens_cache_write_1h: int = 0
    images: int = 0
    web_searches: int = 0
    usage_estimated: bool = False  # the upstream reported no usage: Tollway counted the tokens
    hold_nanos: int = 0
    hold_overrun_nanos: int = 0  # cost beyond the hold (0 when the hold bounded the cost, as it should)
    # Cost by kind in femto-USD (prompt, input_cache_read, input_cache_write, completion, internal_reasoning,
    # image, web_search, request, cache_discount); their sum rounded up once is cost_nanos.
    cost_details: dict[str, int] = field(default_factory=dict)
    session_id: str | None = None  # the client's session id (sticky routing), as sent
    preset_id: str | None = None
