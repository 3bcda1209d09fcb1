"""The Models page: the catalog with prices, providers, and the latency and throughput seen lately."""

from __future__ import annotations

from aiohttp import web

from tollway.api.context import services_of
from tollway.dashboard.web import render, require_user
from tollway.money import femtos_to_price_string


async def models_page(request: web.Request) -> web.Response:
    services = services_of(request)
    who, _user = await require_user(request)
    rows = []
    for model in services.catalog.models():
        price = model.cheapest.price
        stats = [services.gateway.health.stats(e.endpoint_id) for e in model.endpoints]
        latency = [s.latency_ms for s in stats if s.latency_ms is not None]
        throughput = [s.throughput_tps for s in stats if s.throughput_tps is not None]
        rows.append(
            {
                "id": model.id,
                "name": model.name,
                "prompt": femtos_to_price_string(price.prompt_femtos * 1_000_000),
                "completion": femtos_to_price_string(price.completion_femtos * 1_000_000),
                "context": model.context_length,
                "providers": ", ".join(e.provider_name for e in model.endpoints),
                "latency": f"{min(latency):.0f} ms" if latency else "–",
                "throughput": f"{max(throughput):.0f} tok/s" if throughput else "–",
            }
        )
    return render(request, who, "models.html", title="Models", active="/models", models=rows)


def routes() -> list[web.RouteDef]:
    return [web.get("/models", models_page)]
