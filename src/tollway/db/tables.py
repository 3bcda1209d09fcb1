"""The schema of record. Times are epoch microseconds (`*_at_us`) so that SQLite and PostgreSQL compare alike."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
Serial = BigInteger().with_variant(Integer, "sqlite")

settings_store = Table(
    "settings_store",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_accounts_email", "email"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("account_id", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("label", String(40), nullable=False),
    Column("is_management", Boolean, nullable=False, default=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("limit_nanos", BigInteger, nullable=True),
    Column("limit_reset", String(10), nullable=True),
    Column("include_byok_in_limit", Boolean, nullable=False, default=False),
    Column("creator_user_id", String(64), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=True),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("deleted_at_us", BigInteger, nullable=True),
    # Bumped on every change so running servers can pick up changes made elsewhere (CLI, other processes).
    Column("revision", BigInteger, nullable=False, default=0),
    Index("ix_api_keys_account", "account_id"),
    Index("ix_api_keys_revision", "revision"),
)

# One row per key or rate-limit change: its id is the change's revision (see db/revisions.py).
change_revisions = Table(
    "change_revisions",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("subject", String(80), nullable=False),
    Column("changed_at_us", BigInteger, nullable=False),
)

# Append-only. Credits are every kind but usage; usage entries carry the key that spent them.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("account_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("key_id", String(40), nullable=True),
    Column("generation_id", String(64), nullable=True),
    Column("reference", String(128), nullable=True),
    Column("reason", Text, nullable=True),
    Column("origin", String(40), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    UniqueConstraint("generation_id", name="uq_ledger_generation"),
    UniqueConstraint("kind", "reference", name="uq_ledger_kind_reference"),
    Index("ix_ledger_account", "account_id", "id"),
    Index("ix_ledger_key_time", "key_id", "created_at_us"),
    CheckConstraint("kind IN ('grant', 'purchase', 'usage', 'refund', 'adjustment')", name="ck_ledger_kind"),
    CheckConstraint("kind <> 'usage' OR amount_nanos >= 0", name="ck_ledger_usage_not_negative"),
)

generations = Table(
    "generations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(40), nullable=False),
    Column("key_id", String(40), nullable=True),
    Column("model", String(200), nullable=False),
    Column("provider_name", String(200), nullable=True),
    Column("upstream_id", String(200), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("tokens_prompt", Integer, nullable=False, default=0),
    Column("tokens_completion", Integer, nullable=False, default=0),
    Column("tokens_reasoning", Integer, nullable=False, default=0),
    Column("tokens_cached", Integer, nullable=False, default=0),
    Column("cost_nanos", BigInteger, nullable=False, default=0),
    Column("latency_ms", Integer, nullable=True),
    Column("generation_time_ms", Integer, nullable=True),
    Column("streamed", Boolean, nullable=False, default=False),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("finish_reason", String(32), nullable=True),
    Column("native_finish_reason", String(64), nullable=True),
    Column("status", Integer, nullable=False, default=200),
    Column("api_type", String(16), nullable=False, default="completions"),
    Column("external_user", String(256), nullable=True),
    Column("user_agent", String(512), nullable=True),
    Column("http_referer", String(512), nullable=True),
    Column("max_tokens_capped", Integer, nullable=True),
    Column("provider_responses", Text, nullable=True),
    Column("tokens_cache_write", Integer, nullable=False, default=0),
    Column("tokens_cache_write_1h", Integer, nullable=False, default=0),
    Column("images", Integer, nullable=False, default=0),
    Column("web_searches", Integer, nullable=False, default=0),
    Column("usage_estimated", Boolean, nullable=False, default=False),
    Column("hold_nanos", BigInteger, nullable=False, default=0),
    Column("hold_overrun_nanos", BigInteger, nullable=False, default=0),
    Column("cost_details", Text, nullable=True),
    Column("session_id", String(256), nullable=True),  # the client's session (sticky routing), if it sent one
    Column("preset_id", String(40), nullable=True),  # the preset the request used, if any
    Index("ix_generations_account_time", "account_id", "created_at_us"),
    Index("ix_generations_key_time", "key_id", "created_at_us"),
    CheckConstraint(
        "cost_nanos >= 0 AND hold_nanos >= 0 AND hold_overrun_nanos >= 0", name="ck_generations_cost_not_negative"
    ),
    CheckConstraint(
        "tokens_prompt >= 0 AND tokens_completion >= 0 AND tokens_reasoning >= 0 AND tokens_cached >= 0",
        name="ck_generations_tokens_not_negative",
    ),
)

# Written by releases before Alembic (tollway.db.migrations maps its last step to a revision); read only.
schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at_us", BigInteger, nullable=False),
)

# Request, token and concurrency limits set for one account or one key (config defaults apply otherwise).
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("subject_kind", String(8), primary_key=True),
    Column("subject_id", String(40), primary_key=True),
    Column("requests", Integer, nullable=True),
    Column("period", String(8), nullable=True),
    Column("tokens_per_minute", Integer, nullable=True),
    Column("concurrency", Integer, nullable=True),
    Column("revision", BigInteger, nullable=False, default=0),
    Column("updated_at_us", BigInteger, nullable=False),
)

# Refused requests (402, 403, 429), kept so that /balance can say why the last ones failed.
refusals = Table(
    "refusals",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("account_id", String(40), nullable=False),
    Column("key_id", String(40), nullable=True),
    Column("at_us", BigInteger, nullable=False),
    Column("status", Integer, nullable=False),
    Column("code", String(40), nullable=False),
    Column("message", Text, nullable=False),
    Column("request_id", String(64), nullable=False),
    Index("ix_refusals_account_time", "account_id", "at_us"),
)

# Orders and payments: one row per checkout (or auto-recharge charge), bound to its provider's id.
payments = Table(
    "payments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("method", String(16), nullable=False),
    Column("external_id", String(128), nullable=True, unique=True),
    Column("payment_intent", String(128), nullable=True),
    Column("amount_nanos", BigInteger, nullable=False),
    Column("fee_nanos", BigInteger, nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("status", String(24), nullable=False),
    Column("refunded_cents", BigInteger, nullable=False, default=0),
    Column("disputed", Boolean, nullable=False, default=False),
    Column("note", Text, nullable=True),
    Column("checkout_url", Text, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Column("credited_at_us", BigInteger, nullable=True),
    Index("ix_payments_account", "account_id", "created_at_us"),
    Index("ix_payments_intent", "payment_intent"),
    CheckConstraint(
        "amount_nanos >= 0 AND fee_nanos >= 0 AND total_cents >= 0 AND refunded_cents >= 0",
        name="ck_payments_amounts_not_negative",
    ),
)

# Every webhook event seen, deduplicated by (provider, event id) in the transaction that applies it.
payment_events = Table(
    "payment_events",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("provider", String(16), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("type", String(64), nullable=False),
    Column("payment_id", String(40), nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("reason", Text, nullable=True),
    Column("received_at_us", BigInteger, nullable=False),
    UniqueConstraint("provider", "event_id", name="uq_payment_event"),
)

auto_recharge = Table(
    "auto_recharge",
    metadata,
    Column("account_id", String(40), primary_key=True),
    Column("enabled", Boolean, nullable=False, default=False),
    Column("threshold_nanos", BigInteger, nullable=False, default=0),
    Column("amount_nanos", BigInteger, nullable=False, default=0),
    Column("customer_id", String(128), nullable=True),
    Column("payment_method_id", String(128), nullable=True),
    Column("disabled_reason", Text, nullable=True),
    Column("in_flight_payment_id", String(40), nullable=True),
    Column("last_charge_at_us", BigInteger, nullable=True),
    Column("updated_at_us", BigInteger, nullable=False),
)

# Dashboard users (members of an account) and their sessions.
users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("account_id", String(40), nullable=False),
    Column("role", String(8), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at_us", BigInteger, nullable=False),
)

# The id is the sha256 (hex) of the session cookie, so a copy of the table opens no session.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(40), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
)

# Single-use sign-up invitations made by admins; only the token's sha256 is kept.
invites = Table(
    "invites",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=False),
    Column("used_at_us", BigInteger, nullable=True),
)

# Append-only record of every change to keys, caps, limits, auto-recharge, cards, grants, refunds and users.
# The database refuses UPDATE and DELETE on it (a trigger on SQLite, rules on PostgreSQL).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("account_id", String(40), nullable=True),
    Column("at_us", BigInteger, nullable=False),
    Column("actor_kind", String(16), nullable=False),
    Column("actor_id", String(128), nullable=True),
    Column("actor_email", String(320), nullable=True),
    Column("action", String(40), nullable=False),
    Column("target", String(200), nullable=True),
    Column("before_json", Text, nullable=True),
    Column("after_json", Text, nullable=True),
    Index("ix_audit_account", "account_id", "id"),
)

# Named request setups of an account (model, fallbacks, provider preferences, default parameters),
# used as "model": "@preset/NAME" or "preset": "NAME"; see tollway.presets.
presets = Table(
    "presets",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account_id", String(40), nullable=False),
    Column("name", String(64), nullable=False),
    Column("description", Text, nullable=True),
    Column("config_json", Text, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=True),
    UniqueConstraint("account_id", "name", name="uq_presets_account_name"),
)
