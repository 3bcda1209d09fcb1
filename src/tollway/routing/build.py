"""Build providers and the catalog from settings: the built-in offline models plus the config file's."""

from __future__ import annotations

import os
import time

from tollway.ledger.pricing import Price
from tollway.money import MoneyFormatError
from tollway.providers.anthropic import AnthropicProvider
from tollway.providers.base import Provider
from tollway.providers.gemini import GeminiProvider
from tollway.providers.http_client import UpstreamPool
from tollway.providers.offline import OfflineProvider
from tollway.providers.openai_compat import OpenAICompatibleProvider
from tollway.routing.catalog import Catalog, CatalogModel, Endpoint
from tollway.settings import ProviderConfig, Settings, SettingsError

OFFLINE_PROVIDER = "offline"
# A fixed creation time keeps /models stable across restarts.
_OFFLINE_CREATED = 1_767_225_600


def _provider(config: ProviderConfig, pool: UpstreamPool, settings: Settings) -> Provider:
    display = config.display_name or config.name
    if config.kind == "offline":
        return OfflineProvider(name=config.name, display_name=display, delay_ms=settings.offline_stream_delay_ms)
    api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if not config.base_url:
        raise SettingsError(f"provider {config.name!r}: base_url is required for kind {config.kind!r}")
    if config.kind == "openai":
        return OpenAICompatibleProvider(
            name=config.name,
            display_name=display,
            base_url=config.base_url,
            api_key=api_key,
            pool=pool,
            timeout_s=config.timeout_seconds,
            connect_timeout_s=config.connect_timeout_seconds,
            max_tokens_field=config.max_tokens_field,
        )
    adapters: dict[str, type[AnthropicProvider] | type[GeminiProvider]] = {
        "anthropic": AnthropicProvider,
        "gemini": GeminiProvider,
    }
    return adapters[config.kind](
        name=config.name,
        display_name=display,
        base_url=config.base_url,
        api_key=api_key,
        pool=pool,
        timeout_s=config.timeout_seconds,
        connect_timeout_s=config.connect_timeout_seconds,
    )


def _offline_models(provider: Provider, settings: Settings) -> list[CatalogModel]:
    paid = Price.parse(settings.offline_prompt_price, settings.offline_completion_price)
    free = Price(0, 0, 0)

    def model(model_id: str, name: str, price: Price, upstream: str, description: str) -> CatalogModel:
        endpoint = Endpoint(
            provider,
            upstream,
            price,
            context_length=8192,
            max_completion_tokens=1024,
            supports=provider.supported_parameters,
        )
        return CatalogModel(
            id=model_id,
            name=name,
            description=description,
            context_length=8192,
            max_completion_tokens=1024,
            created=_OFFLINE_CREATED,
            endpoints=(endpoint,),
        )

    return [
        model(
            "tollway/offline-embed",
            "Tollway Offline Embeddings",
            Price.parse(settings.offline_prompt_price, "0"),
            "offline-embed",
            "Built-in offline embeddings: deterministic unit vectors (64 dimensions by default), no network.",
        ),
        model(
            "tollway/offline-small",
            "Tollway Offline Small",
            paid,
            "offline-small",
            "Built-in offline model: deterministic local text, honest token counts, no network.",
        ),
        model(
            "tollway/offline-small:free",
            "Tollway Offline Small (free)",
            free,
            "offline-small",
            "The free variant of the built-in offline model, under the free-model limits.",
        ),
    ]


def build_catalog(settings: Settings, pool: UpstreamPool) -> tuple[Catalog, dict[str, Provider]]:
    providers: dict[str, Provider] = {}
    models: list[CatalogModel] = []
    if settings.offline_enabled:
        providers[OFFLINE_PROVIDER] = OfflineProvider(delay_ms=settings.offline_stream_delay_ms)
        models.extend(_offline_models(providers[OFFLINE_PROVIDER], settings))
    for config in settings.providers:
        if config.name in providers:
            raise SettingsError(f"provider {config.name!r} is defined twice")
        providers[config.name] = _provider(config, pool, settings)
    now = int(time.time())
    for model_config in settings.models:
        endpoints = []
        for endpoint in model_config.endpoints:
            if endpoint.provider not in providers:
                raise SettingsError(f"model {model_config.id!r}: unknown provider {endpoint.provider!r}")
            pricing = endpoint.pricing
            try:
                price = Price.parse(
                    pricing.prompt,
                    pricing.completion,
                    pricing.request,
                    input_cache_read=pricing.input_cache_read,
                    input_cache_write=pricing.input_cache_write,
                    input_cache_write_1h=pricing.input_cache_write_1h,
                    internal_reasoning=pricing.internal_reasoning,
                    image=pricing.image,
                    web_search=pricing.web_search,
                )
            except MoneyFormatError as exc:
                raise SettingsError(f"model {model_config.id!r}: {exc}") from exc
            endpoints.append(
                Endpoint(
                    providers[endpoint.provider],
                    endpoint.upstream_model,
                    price,
                    context_length=endpoint.context_length or model_config.context_length,
                    max_completion_tokens=endpoint.max_completion_tokens or model_config.max_completion_tokens,
                    max_requests_per_second=endpoint.max_requests_per_second,
                    data_collection=endpoint.data_collection,
                    # What the upstream kind honours, unless the operator says exactly what this endpoint does.
                    supports=frozenset(endpoint.supports)
                    if endpoint.supports is not None
                    else providers[endpoint.provider].supported_parameters,
                )
            )
        models = [m for m in models if m.id != model_config.id]
        models.append(
            CatalogModel(
                id=model_config.id,
                name=model_config.name or model_config.id,
                description=model_config.description or "",
                context_length=model_config.context_length,
                max_completion_tokens=model_config.max_completion_tokens,
                created=now,
                endpoints=tuple(endpoints),
            )
        )
    return Catalog(models, _aliases(settings, {m.id for m in models})), providers


def _aliases(settings: Settings, model_ids: set[str]) -> dict[str, str]:
    """Configured aliases, each naming a model this catalog has (a typo is a start-up error, not a 400 later)."""
    for alias, target in settings.aliases.items():
        if alias in model_ids:
            raise SettingsError(f"aliases: {alias!r} is already a model id; pick another alias")
        if target not in model_ids:
            raise SettingsError(f"aliases: {alias!r} names {target!r}, which is not a model of this gateway")
    return dict(settings.aliases)
