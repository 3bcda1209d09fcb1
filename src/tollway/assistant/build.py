"""Builds the assistant once at start-up from the server's services (docs indexed here, not per question)."""

from __future__ import annotations

import logging

from tollway.assistant.docs import DocIndex, default_doc_paths
from tollway.assistant.model_mode import ModelWriter
from tollway.assistant.service import AccountSources, AnswerWriter, AssistantService, Embed
from tollway.auth.records import KeyRecord
from tollway.providers.base import Embeddings
from tollway.routing.catalog import Catalog
from tollway.services import Services

log = logging.getLogger("tollway.assistant")
_BATCH = 64


def build_assistant(services: Services) -> AssistantService:
    settings = services.settings
    paths, root = default_doc_paths(settings.assistant_docs_dir)
    docs = DocIndex.from_paths(paths, root)
    log.info("assistant documentation", extra={"passages": len(docs.passages), "files": len(paths)})
    sources = AccountSources(
        balance=services.balance,
        accounts=services.accounts.store,
        payments=services.payments.store,
        auto_recharge=services.payments.auto,
        catalog=services.catalog,
        generation=services.ledger.generation,
        key_figures=services.ledger.key_figures,
    )
    writer: AnswerWriter | None = None
    if settings.assistant_model:
        house_token = settings.assistant_house_key
        house_account = settings.assistant_house_account

        async def house_key() -> KeyRecord | None:
            now_us = services.clock.now_us()
            if house_token is not None:
                record = await services.keys.lookup(house_token.get_secret_value())
                return record if record is not None and record.usable_at(now_us) else None
            if house_account is not None:
                keys = await services.accounts.store.keys_for_account(house_account, include_disabled=False)
                return next((k for k in keys if not k.is_management and k.usable_at(now_us)), None)
            return None

        writer = ModelWriter(
            services.gateway,
            settings.assistant_model,
            settings.assistant_billing,
            house_key,
            services.metrics,
            settings.models_fallback_limit,
        )
    return AssistantService(
        sources,
        settings,
        docs,
        writer,
        tuple(sorted(services.payments.configured)),
        embed=embedder(services.catalog, settings.assistant_embedding_model),
    )


def embedder(catalog: Catalog, model_id: str | None) -> Embed | None:
    """The configured embedding model's provider, called directly (the operator's documentation, not billed)."""
    model = catalog.resolve(model_id) if model_id else None
    if model is None:
        if model_id:
            log.warning(
                "assistant_embedding_model is not in the catalog; ranking is lexical", extra={"model": model_id}
            )
        return None
    endpoint = model.cheapest
    embed = getattr(endpoint.provider, "embed", None)
    if embed is None:
        log.warning("assistant_embedding_model's provider serves no embeddings", extra={"model": model_id})
        return None

    async def vectors(texts: list[str]) -> list[list[float]]:
        found: list[list[float]] = []
        for start in range(0, len(texts), _BATCH):
            result: Embeddings = await embed(texts[start : start + _BATCH], endpoint.upstream_model, {})
            found += result.vectors
        return found

    return vectors
