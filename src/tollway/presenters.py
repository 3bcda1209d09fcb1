"""JSON shapes of OpenRouter's API (spec part 2), shared by the HTTP API and the CLI's --json output."""

from __future__ import annotations

from typing import Any

from tollway.auth.records import AccountRecord, KeyRecord
from tollway.clock import us_to_iso
from tollway.ledger.book import AccountSnapshot, KeySnapshot
from tollway.ledger.pricing import Price
from tollway.ledger.records import GenerationRecord, LedgerEntry
from tollway.money import FEMTOS_PER_USD, femtos_to_price_string, nanos_to_usd
from tollway.providers.base import ALL_PARAMETERS
from tollway.routing.catalog import CatalogModel, Endpoint
from tollway.routing.health import HealthBoard


def _usd(nanos: int | None) -> float | None:
    return None if nanos is None else nanos_to_usd(nanos)


def key_usage_fields(figures: KeySnapshot) -> dict[str, Any]:
    return {
        "limit": _usd(figures.limit_nanos),
        "limit_reset": figures.limit_reset.value if figures.limit_reset else None,
        "limit_remaining": _usd(figures.limit_remaining_nanos),
        "include_byok_in_limit": False,
        "usage": nanos_to_usd(figures.usage_nanos),
        "usage_daily": nanos_to_usd(figures.usage_daily_nanos),
        "usage_weekly": nanos_to_usd(figures.usage_weekly_nanos),
        "usage_monthly": nanos_to_usd(figures.usage_monthly_nanos),
        "byok_usage": 0,
        "byok_usage_daily": 0,
        "byok_usage_weekly": 0,
        "byok_usage_monthly": 0,
    }


def key_object(key: KeyRecord, figures: KeySnapshot, last_used_us: int | None = None) -> dict[str, Any]:
    """A key as /api/v1/keys lists it."""
    return {
        "hash": key.hash,
        "name": key.name,
        "label": key.label,
        "disabled": key.disabled,
        **key_usage_fields(figures),
        "include_byok_in_limit": key.include_byok_in_limit,
        "created_at": us_to_iso(key.created_at_us),
        "updated_at": us_to_iso(key.updated_at_us),
        "expires_at": us_to_iso(key.expires_at_us),
        "creator_user_id": key.creator_user_id,
        # Tollway has no workspaces: a key's account plays that part, so the id is the account's.
        "workspace_id": key.account_id,
        "external_user": None,
        "last_used_at": us_to_iso(last_used_us),
        "is_management_key": key.is_management,
    }


def current_key(
    key: KeyRecord,
    figures: KeySnapshot,
    account: AccountSnapshot,
    rate_limit: dict[str, Any] | None,
    free_daily: dict[str, int],
) -> dict[str, Any]:
    """GET /api/v1/key: the caller's own key, full current field set (OpenRouter's SDK requires each)."""
    body: dict[str, Any] = {
        "label": key.label,
        "name": key.name,
        "hash": key.hash,
        **key_usage_fields(figures),
        "include_byok_in_limit": key.include_byok_in_limit,
        "is_free_tier": account.purchased_nanos <= 0,
        "is_management_key": key.is_management,
        "is_provisioning_key": key.is_management,
        "creator_user_id": key.creator_user_id,
        "expires_at": us_to_iso(key.expires_at_us),
        "disabled": key.disabled,
        "rate_limit": {"note": "The tightest request limit of this key or its account.", **rate_limit}
        if rate_limit
        else _UNLIMITED,
        "free_model_daily_requests": free_daily,
        "allowed_data_regions": [],
        "budgets": [],
        "effective_budget": None,
        "organization_id": None,
        "workspace_id": key.account_id,
    }
    return body


# OpenRouter's own answer for a key no request limit applies to: rate_limit is always an object.
_UNLIMITED = {"requests": -1, "interval": "10s", "note": "No request rate limit applies to this key."}


def credits_body(figures: AccountSnapshot) -> dict[str, Any]:
    return {
        "total_credits": nanos_to_usd(figures.credits_nanos),
        "total_usage": nanos_to_usd(figures.usage_nanos),
    }


def balance_figures(account: AccountRecord, figures: AccountSnapshot) -> dict[str, Any]:
    return {
        "account_id": account.id,
        "email": account.email,
        "total_credits": nanos_to_usd(figures.credits_nanos),
        "total_purchased": nanos_to_usd(figures.purchased_nanos),
        "total_granted": nanos_to_usd(figures.granted_nanos),
        "total_usage": nanos_to_usd(figures.usage_nanos),
        "held_in_flight": nanos_to_usd(figures.held_nanos),
        "balance": nanos_to_usd(figures.balance_nanos),
        "available": nanos_to_usd(max(figures.available_nanos, 0)),
    }


def account_object(account: AccountRecord) -> dict[str, Any]:
    return {"id": account.id, "email": account.email, "created_at": us_to_iso(account.created_at_us)}


def entry_object(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "account_id": entry.account_id,
        "kind": entry.kind.value,
        "amount": nanos_to_usd(entry.amount_nanos),
        "key_id": entry.key_id,
        "generation_id": entry.generation_id,
        "reason": entry.reason,
        "created_at": us_to_iso(entry.created_at_us),
    }


def generation_object(record: GenerationRecord) -> dict[str, Any]:
    cost = nanos_to_usd(record.cost_nanos)
    return {
        "id": record.id,
        "upstream_id": record.upstream_id,
        "request_id": record.id,
        "session_id": record.session_id,
        "total_cost": cost,
        "usage": cost,
        "upstream_inference_cost": None,
        "cache_discount": femtos_to_usd(record.cost_details.get("cache_discount", 0)),
        "created_at": us_to_iso(record.created_at_us),
        "latency": record.latency_ms,
        "moderation_latency": None,
        "generation_time": record.generation_time_ms,
        "model": record.model,
        "provider_name": record.provider_name,
        "router": None,
        "app_id": None,
        "origin": record.http_referer or "",
        "service_tier": None,
        "data_region": "global",
        "streamed": record.streamed,
        "cancelled": record.cancelled,
        "is_byok": False,
        "finish_reason": record.finish_reason,
        "native_finish_reason": record.native_finish_reason,
        "tokens_prompt": record.tokens_prompt,
        "tokens_completion": record.tokens_completion,
        "native_tokens_prompt": record.tokens_prompt,
        "native_tokens_completion": record.tokens_completion,
        "native_tokens_completion_images": 0,
        "native_tokens_reasoning": record.tokens_reasoning,
        "native_tokens_cached": record.tokens_cached,
        "native_tokens_cache_write": record.tokens_cache_write,
        "num_media_prompt": record.images,
        "num_input_audio_prompt": None,
        "num_media_completion": None,
        "num_search_results": record.web_searches,
        "num_fetches": None,
        "web_search_engine": None,
        "external_user": record.external_user,
        "api_type": record.api_type,
        "preset_id": record.preset_id,
        "user_agent": record.user_agent,
        "http_referer": record.http_referer,
        "provider_responses": [
            {
                "id": None,
                "endpoint_id": attempt.endpoint_id,
                "provider_name": attempt.provider_name,
                "model_permaslug": attempt.model,
                "latency": attempt.latency_ms,
                "status": attempt.status,
                "is_byok": False,
            }
            for attempt in record.provider_responses
        ],
        "response_cache_source_id": None,
        "workspace_id": None,
        "max_tokens_capped": record.max_tokens_capped,
        "status": record.status,
        # Tollway's own: the cost of each kind (USD, before the one rounding of total_cost), whether the
        # upstream reported no usage so Tollway counted the tokens, and what the hold was.
        "cost_details": {kind: femtos_to_usd(value) for kind, value in record.cost_details.items()},
        "usage_estimated": record.usage_estimated,
        "hold": nanos_to_usd(record.hold_nanos),
        "hold_overrun": nanos_to_usd(record.hold_overrun_nanos),
    }


# Kinds OpenRouter's pricing object has that Tollway never charges (no audio or image output here).
_UNPRICED_KINDS = ("image_output", "image_token", "audio", "audio_output", "input_audio_cache")


def pricing_object(price: Price) -> dict[str, str]:
    """Every field of OpenRouter's `pricing` object, each the rate really charged ("0" when free)."""
    rates = {kind: femtos_to_price_string(rate) for kind, rate in price.rates().items()}
    return {**rates, **dict.fromkeys(_UNPRICED_KINDS, "0")}


def supported_parameters(endpoint: Endpoint) -> frozenset[str]:
    return endpoint.supports if endpoint.supports is not None else ALL_PARAMETERS


def femtos_to_usd(femtos: int) -> float:
    return femtos / FEMTOS_PER_USD


def model_object(model: CatalogModel) -> dict[str, Any]:
    price = model.cheapest.price
    return {
        "id": model.id,
        "canonical_slug": model.id,
        "hugging_face_id": None,
        "name": model.name,
        "created": model.created,
        "description": model.description,
        "context_length": model.context_length,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": pricing_object(price),
        "top_provider": {
            "context_length": model.context_length,
            "max_completion_tokens": model.max_completion_tokens,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": sorted(set().union(*(supported_parameters(e) for e in model.endpoints))),
        "default_parameters": None,
        "supported_voices": None,
        "expiration_date": None,
        "links": {"details": f"/api/v1/models/{model.id}/endpoints"},
    }


def _tool_choice_support(parameters: frozenset[str]) -> dict[str, bool]:
    supported = "tool_choice" in parameters
    return {"auto": supported, "function": supported, "none": supported, "required": supported}


def endpoint_objects(model: CatalogModel, health: HealthBoard | None = None) -> list[dict[str, Any]]:
    """OpenRouter's endpoint objects; latency and throughput are percentiles of the last 30 minutes, or null."""

    def live(endpoint_id: str) -> dict[str, Any]:
        if health is None:
            return {
                "latency_last_30m": None,
                "throughput_last_30m": None,
                "uptime_last_5m": None,
                "uptime_last_30m": None,
                "uptime_last_1d": None,
                "circuit": "closed",
            }
        return {
            "latency_last_30m": health.latency_percentiles(endpoint_id),
            "throughput_last_30m": health.throughput_percentiles(endpoint_id),
            "uptime_last_5m": health.uptime(endpoint_id, 5),
            "uptime_last_30m": health.uptime(endpoint_id, 30),
            "uptime_last_1d": health.uptime(endpoint_id, 24 * 60),
            "circuit": health.state(endpoint_id),
        }

    return [
        {
            "name": f"{endpoint.provider_name} | {model.id}",
            "model_id": model.id,
            "model_name": model.name,
            "provider_name": endpoint.provider_name,
            "tag": endpoint.provider.name,
            "context_length": endpoint.context_length,
            "max_completion_tokens": endpoint.max_completion_tokens,
            "max_prompt_tokens": None,
            "pricing": pricing_object(endpoint.price),
            "supported_parameters": sorted(supported_parameters(endpoint)),
            "supports_tool_choice": _tool_choice_support(supported_parameters(endpoint)),
            "native_tools": {},
            "quantization": None,
            "service_tier": None,
            "supports_implicit_caching": False,
            "supports_diarization": False,
            "status": 0,
            **live(endpoint.endpoint_id),
        }
        for endpoint in model.endpoints
    ]
