"""One typed settings tree: TOLLWAY_* environment variables over an optional YAML file over defaults.

Unknown keys are rejected (a misspelt setting is an error, not a silent default) and secrets are
SecretStr so they never reach a log line or a repr.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from tollway.api.addresses import parse_networks


class SettingsError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


def decimal_text(value: Any) -> Any:
    """A YAML number where a USD amount or price is meant (`checkout_min_usd: 5`, `prompt: 0.000001`), as text.

    A float becomes its shortest decimal form (0.000001, not 1e-06), which is the number as written in the file.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(Strict):
    name: str = Field(min_length=1)
    kind: Literal["openai", "anthropic", "gemini", "offline"] = "openai"
    base_url: str = ""
    api_key_env: str | None = None
    display_name: str | None = None
    # Wait for the first byte of an answer; unset = upstream_first_byte_timeout_seconds.
    timeout_seconds: float | None = Field(default=None, gt=0)
    connect_timeout_seconds: float = 10.0
    # kind openai: the field that carries the output limit. OpenAI's reasoning models (o-series, gpt-5) refuse
    # max_tokens and want max_completion_tokens, which OpenAI's other chat models accept too.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"


class PricingConfig(Strict):
    """USD decimal strings per token (per image, search or request for those kinds), as in /models.

    Left out: cache reads and writes cost the prompt rate, 1-hour writes the cache-write rate,
    internal_reasoning the completion rate; image and web_search cost nothing.
    """

    prompt: str = "0"
    completion: str = "0"
    request: str = "0"
    input_cache_read: str | None = None
    input_cache_write: str | None = None
    input_cache_write_1h: str | None = None
    internal_reasoning: str | None = None
    image: str = "0"
    web_search: str = "0"

    @field_validator(
        "prompt",
        "completion",
        "request",
        "input_cache_read",
        "input_cache_write",
        "input_cache_write_1h",
        "internal_reasoning",
        "image",
        "web_search",
        mode="before",
    )
    @classmethod
    def _as_text(cls, value: Any) -> str | None:
        return None if value is None else str(decimal_text(value))


class EndpointConfig(Strict):
    provider: str
    upstream_model: str
    pricing: PricingConfig = PricingConfig()
    context_length: int | None = None
    max_completion_tokens: int | None = None
    # Upstream protection: at most this many requests per second to this endpoint, for all tenants.
    max_requests_per_second: int | None = Field(default=None, ge=1)
    # Whether this provider may keep or train on prompts; requests with data_collection "deny" skip it.
    data_collection: Literal["allow", "deny"] = "deny"
    # Request parameters this endpoint honours; unset = all. Requests with require_parameters skip the rest.
    supports: list[str] | None = None


class LimitDefaults(Strict):
    """Limits applied to every key (or account) that has none of its own."""

    requests: int | None = Field(default=None, ge=1)
    per: Literal["second", "minute", "hour", "day"] | None = None
    tokens_per_minute: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1)


class ModelConfig(Strict):
    id: str = Field(min_length=1)
    name: str | None = None
    description: str | None = None
    context_length: int = 8192
    max_completion_tokens: int = 1024
    endpoints: list[EndpointConfig] = Field(min_length=1)


class Settings(BaseSettings):
    """Every knob of the gateway; see the README's configuration reference."""

    model_config = SettingsConfigDict(env_prefix="TOLLWAY_", extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    database_url: str = "sqlite:///./tollway.db"
    # Upgrade a database behind the code at start (default: refuse, naming `tollway migrate`); a new, empty
    # database is always created.
    auto_migrate: bool = False
    redis_url: str | None = None
    admin_token: SecretStr | None = None
    secret_key: SecretStr | None = None  # signs dashboard CSRF tokens; generated and stored when unset
    config: Path | None = None
    max_body_bytes: int = 10 * 1024 * 1024
    log_level: str = "info"
    access_log: bool = False

    # Holds count each input image and each page of an input file as this many prompt tokens.
    image_prompt_tokens: int = Field(default=1600, ge=0)
    file_page_prompt_tokens: int = Field(default=1600, ge=0)

    # The built-in offline provider.
    offline_enabled: bool = True
    offline_stream_delay_ms: float = 0.0
    offline_prompt_price: str = "0.000001"
    offline_completion_price: str = "0.000002"

    # Money and bookkeeping.
    min_affordable_tokens: int = 16
    ledger_flush_timeout_seconds: float = 2.0
    ledger_poll_interval_seconds: float = 0.25
    # PostgreSQL: a process reads what others changed when notified (LISTEN/NOTIFY), and everything this often
    # in case a notification was missed (a broken connection notices at the latest here).
    ledger_safety_poll_seconds: float = Field(default=5.0, gt=0)
    ledger_queue_limit: int = 10_000
    # With Redis, a hold a crashed process left behind is released this long after it was placed.
    hold_ttl_seconds: float = 900.0
    # Settlements the database did not confirm in time are fsynced here before the answer goes out
    # (a directory; default: beside the SQLite file, else ./tollway-spool).
    spool_path: Path | None = None
    # SQLite settlements: "normal" survives a process crash, "full" also a power loss (an fsync per commit).
    sqlite_synchronous: Literal["normal", "full"] = "normal"

    # Rate limits (free models are account-wide; purchases, not grants, unlock the higher daily cap).
    free_requests_per_minute: int = 20
    free_requests_per_day: int = 50
    free_requests_per_day_unlocked: int = 1000
    free_unlock_purchased_usd: str = "10"
    rate_limit_fail_open: bool = False
    key_limits: LimitDefaults = LimitDefaults()
    account_limits: LimitDefaults = LimitDefaults()

    # Payments (all optional: without them the payment endpoints answer 501).
    stripe_secret_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    checkout_success_url: str = "http://127.0.0.1:8080/credits?checkout=success"
    checkout_cancel_url: str = "http://127.0.0.1:8080/credits?checkout=cancelled"
    crypto_api_key: SecretStr | None = None
    crypto_webhook_secret: SecretStr | None = None
    crypto_api_base: str = "https://api.commerce.coinbase.com"
    checkout_min_usd: str = "5"
    checkout_max_usd: str = "25000"
    card_fee_percent: str = "5.5"
    card_fee_min_usd: str = "0.80"
    crypto_fee_percent: str = "5"
    webhook_tolerance_seconds: int = 300
    refund_window_hours: float = 24.0
    auto_recharge_min_interval_seconds: float = 600.0
    # A charge slot held this long belongs to a process that died mid-charge: it is taken over.
    auto_recharge_claim_timeout_seconds: float = Field(default=300.0, gt=0)

    # Dashboard sign-up and sign-in (use invite or closed on a server others can reach).
    signup_mode: Literal["open", "invite", "closed"] = "open"
    invite_ttl_hours: float = Field(default=72.0, gt=0)
    # Failed sign-ins per client address and per email: a bucket of this many, refilled at this rate.
    login_failures_burst: int = Field(default=10, ge=1)
    login_failures_per_minute: float = Field(default=5.0, gt=0)

    # Upstream bounds: sizes end the attempt with a 502; timeouts are per phase, never a total deadline.
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_sse_line_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    upstream_first_byte_timeout_seconds: float = Field(default=600.0, gt=0)
    upstream_idle_timeout_seconds: float = Field(default=300.0, gt=0)

    # Abuse: failed authentications per client address (a bucket of this many, refilled per minute),
    # unknown keys remembered (bounded), /metrics behind a bearer token, refusals kept per account.
    auth_failures_burst: int = Field(default=30, ge=1)
    auth_failures_per_minute: float = Field(default=60.0, gt=0)
    # Reverse proxies whose X-Forwarded-For names the client for those per-address throttles (addresses or
    # networks); empty: the peer's own address, whatever the header says.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    unknown_key_cache_size: int = Field(default=100_000, ge=1)
    metrics_token: SecretStr | None = None
    refusal_history_per_account: int = Field(default=100, ge=1)

    # The support assistant (POST /api/v1/assistant, the dashboard's Help page, `tollway ask`, Discord).
    # With assistant_model set, that model writes the answers from the facts (billed to the house key's
    # account or to the asker); every USD figure it writes must be a fact's, else the grounded answer is sent.
    assistant_model: str | None = None
    assistant_billing: Literal["house", "asker"] = "house"
    assistant_house_key: SecretStr | None = None  # an inference key of the house account, or:
    assistant_house_account: str | None = None  # the house account's id (its first usable inference key pays)
    assistant_max_message_chars: int = Field(default=2000, ge=1)
    assistant_max_messages: int = Field(default=20, ge=1)
    assistant_requests_per_minute: int = Field(default=20, ge=1)
    assistant_docs_dir: Path | None = None  # README.md and docs/*.md to cite; default: the source tree's
    assistant_embedding_model: str | None = None  # adds its vectors to the lexical ranking of passages
    discord_public_key: str | None = None  # hex Ed25519 key of the Discord application
    discord_application_id: str | None = None
    discord_bot_token: SecretStr | None = None
    discord_api_base: str = "https://discord.com/api/v10"
    discord_link_code_ttl_seconds: int = Field(default=600, ge=1)

    # OpenTelemetry traces over OTLP/HTTP (off unless set; OTEL_EXPORTER_OTLP_ENDPOINT works too): a collector's
    # base URL such as http://127.0.0.1:4318. Prompts are recorded only with otel_capture_content.
    otel_endpoint: str | None = None
    otel_capture_content: bool = False
    otel_service_name: str = "tollway"

    # Time: shift this process's clock by this many seconds (tests of expiry and windows; leave 0 in production).
    clock_offset_seconds: float = 0.0

    # Model aliases resolved before routing, e.g. {fast: acme/fast-chat}; answers name the resolved model.
    aliases: dict[str, str] = Field(default_factory=dict)

    # Compatibility.
    models_fallback_limit: int = 3
    keepalive_interval_seconds: float = 10.0

    providers: list[ProviderConfig] = Field(default_factory=list)
    models: list[ModelConfig] = Field(default_factory=list)

    @field_validator(
        "offline_prompt_price",
        "offline_completion_price",
        "free_unlock_purchased_usd",
        "checkout_min_usd",
        "checkout_max_usd",
        "card_fee_percent",
        "card_fee_min_usd",
        "crypto_fee_percent",
        "discord_application_id",
        mode="before",
    )
    @classmethod
    def _amount_as_text(cls, value: Any) -> Any:
        return decimal_text(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: Any) -> Any:
        """The environment gives `10.0.0.1, 10.1.0.0/16`; each entry must be an address or a network."""
        if isinstance(value, str):
            value = [entry.strip() for entry in value.split(",") if entry.strip()]
        if isinstance(value, list):
            parse_networks([str(entry) for entry in value])
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments (CLI flags) win over the environment, which wins over the YAML file.
        return (init_settings, env_settings)


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml  # here, not at the top: only a config file needs it, and every command imports this module

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SettingsError(f"config file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(f"config file {path} must be a mapping of settings at the top level")
    return loaded


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from flags (overrides), TOLLWAY_* env and the YAML file named by either."""
    given = {key: value for key, value in overrides.items() if value is not None}
    config_path = given.get("config") or os.environ.get("TOLLWAY_CONFIG")
    file_values: dict[str, Any] = {}
    if config_path:
        file_values = _read_yaml(Path(config_path))
        given["config"] = Path(config_path)
    env_names = {name for name in Settings.model_fields if f"TOLLWAY_{name.upper()}" in os.environ}
    # File values fill only what neither a flag nor the environment set.
    merged = {key: value for key, value in file_values.items() if key not in env_names}
    merged.update(given)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}" for error in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from exc
