"""Builds the web application: routes, middleware and the start/stop of services. No business logic."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from tollway import tracing
from tollway.api import (
    account,
    activity,
    admin,
    audit,
    balance,
    chat,
    completions,
    embeddings,
    health,
    keys,
    messages,
    metrics,
    models,
    openapi,
    payments,
    presets,
    responses_api,
)
from tollway.api.assistant import ASSISTANT, DISCORD_LINKS
from tollway.api.assistant import assistant as ask_assistant
from tollway.api.context import SERVICES
from tollway.api.discord import interactions as discord_interactions
from tollway.api.middleware import MAX_BODY_KEY, error_middleware
from tollway.api.tracing import tracing_middleware
from tollway.assistant.build import build_assistant
from tollway.assistant.links import DiscordLinks
from tollway.dashboard.help import routes as help_routes
from tollway.dashboard.views import routes as dashboard_routes
from tollway.services import Services

# Room for headers and multipart overhead above the body limit, which read_json enforces precisely.
_CLIENT_MAX_SLACK = 1024 * 1024


def _routes(prefix: str) -> list[web.RouteDef]:
    return [
        web.post(f"{prefix}/chat/completions", chat.chat_completions),
        web.post(f"{prefix}/messages", messages.messages),
        web.post(f"{prefix}/responses", responses_api.create_response),
        web.get(prefix + "/responses/{response_id}", responses_api.stored_response),
        web.delete(prefix + "/responses/{response_id}", responses_api.stored_response),
        web.post(f"{prefix}/completions", completions.completions),
        web.get(f"{prefix}/openapi.json", openapi.openapi_json),
        web.post(f"{prefix}/embeddings", embeddings.embeddings),
        web.get(f"{prefix}/models", models.list_models),
        web.get(f"{prefix}/models/count", models.count_models),
        web.get(prefix + "/models/{author}/{slug}/endpoints", models.model_endpoints),
        web.get(prefix + "/model/{author}/{slug}", models.one_model),
        web.get(prefix + "/models/{author}/{slug}", models.retrieve_model),
        web.get(prefix + "/models/{model_id}", models.retrieve_model),  # the openai SDK sends fake%2Fchat
        web.get(f"{prefix}/key", account.current_key_info),
        web.get(f"{prefix}/auth/key", account.current_key_info),
        web.get(f"{prefix}/credits", account.credits),
        web.get(f"{prefix}/balance", balance.balance),
        web.post(f"{prefix}/assistant", ask_assistant),
        web.post(f"{prefix}/credits/checkout", payments.checkout),
        web.get(f"{prefix}/credits/purchases", payments.purchases),
        web.get(f"{prefix}/credits/auto-recharge", payments.get_auto_recharge),
        web.put(f"{prefix}/credits/auto-recharge", payments.put_auto_recharge),
        web.post(f"{prefix}/credits/auto-recharge/setup", payments.setup_auto_recharge),
        web.post(f"{prefix}/webhooks/stripe", payments.stripe_webhook),
        web.post(f"{prefix}/webhooks/crypto", payments.crypto_webhook),
        web.get(f"{prefix}/generation", account.generation),
        web.get(f"{prefix}/audit", audit.list_audit),
        web.get(f"{prefix}/activity", activity.activity),
        web.get(f"{prefix}/presets", presets.list_presets),
        web.post(f"{prefix}/presets", presets.create_preset),
        web.get(prefix + "/presets/{name}", presets.get_preset),
        web.patch(prefix + "/presets/{name}", presets.update_preset),
        web.delete(prefix + "/presets/{name}", presets.delete_preset),
        web.get(f"{prefix}/keys", keys.list_keys),
        web.post(f"{prefix}/keys", keys.create_key),
        web.get(prefix + "/keys/{hash}", keys.get_key),
        web.patch(prefix + "/keys/{hash}", keys.update_key),
        web.delete(prefix + "/keys/{hash}", keys.delete_key),
        web.post(f"{prefix}/admin/accounts", admin.create_account),
        web.get(f"{prefix}/admin/accounts", admin.list_accounts),
        web.get(prefix + "/admin/accounts/{account_id}/balance", admin.account_balance),
        web.post(prefix + "/admin/accounts/{account_id}/credits", admin.grant_credits),
        web.post(prefix + "/admin/accounts/{account_id}/keys", admin.create_account_key),
        web.get(prefix + "/admin/accounts/{account_id}/keys", admin.account_keys),
        web.get(prefix + "/admin/accounts/{account_id}/ledger", admin.account_ledger),
        web.get(prefix + "/admin/accounts/{account_id}/limits", admin.get_limits),
        web.put(prefix + "/admin/accounts/{account_id}/limits", admin.put_limits),
        web.get(prefix + "/admin/keys/{hash}/limits", admin.get_limits),
        web.put(prefix + "/admin/keys/{hash}/limits", admin.put_limits),
    ]


def build_app(services: Services) -> web.Application:
    app = web.Application(
        # Traced only when an OTLP endpoint is set: without one the middleware is not even in the chain.
        middlewares=[tracing_middleware, error_middleware] if tracing.ENABLED else [error_middleware],
        client_max_size=services.settings.max_body_bytes + _CLIENT_MAX_SLACK,
    )
    app[SERVICES] = services
    app[MAX_BODY_KEY] = services.settings.max_body_bytes
    app[ASSISTANT] = assistant = build_assistant(services)
    app[DISCORD_LINKS] = DiscordLinks(services.engine, services.clock, services.settings.discord_link_code_ttl_seconds)
    app.add_routes(_routes("/api/v1"))
    app.add_routes(_routes("/v1"))
    app.add_routes(dashboard_routes())
    app.add_routes(help_routes())
    app.add_routes([web.post("/integrations/discord/interactions", discord_interactions)])
    app.add_routes(
        [
            web.get("/health", health.health),
            web.get("/api/v1/health", health.health),  # for a proxy that forwards /api/v1 only
            web.get("/ready", health.ready),
            web.get("/metrics", metrics.metrics),
            web.get("/docs/api", openapi.docs_page),
        ]
    )

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        await services.start()
        yield
        await services.stop()

    app.cleanup_ctx.append(lifecycle)

    async def assistant_docs(_app: web.Application) -> AsyncIterator[None]:
        assistant.start()  # embeds the documentation in the background when an embedding model is set
        yield
        await assistant.stop()

    app.cleanup_ctx.append(assistant_docs)
    return app
