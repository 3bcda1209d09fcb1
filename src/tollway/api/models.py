"""GET /api/v1/models, /models/count, /model/{author}/{slug} and /models/{author}/{slug}/endpoints (public)."""

from __future__ import annotations

from aiohttp import web

from tollway.api.context import services_of
from tollway.api.http import json_response, query_int
from tollway.errors import NotFound
from tollway.presenters import endpoint_objects, model_object
from tollway.routing.catalog import CatalogModel


async def list_models(request: web.Request) -> web.Response:
    models = services_of(request).catalog.models()
    offset = query_int(request, "offset", 0, 0, 10**9)
    limit = query_int(request, "limit", 500, 1, 1000)
    page = models[offset : offset + limit]
    following = offset + limit
    next_link = f"/api/v1/models?offset={following}&limit={limit}" if following < len(models) else None
    return json_response(
        {"data": [model_object(m) for m in page], "total_count": len(models), "links": {"next": next_link}}
    )


async def count_models(request: web.Request) -> web.Response:
    return json_response({"data": {"count": len(services_of(request).catalog.models())}})


def _model(request: web.Request) -> CatalogModel:
    info = request.match_info
    model_id = info["model_id"] if "model_id" in info else f"{info['author']}/{info['slug']}"
    model = services_of(request).catalog.resolve(model_id)
    if model is None:
        raise NotFound(f"No model {model_id!r}. See GET /api/v1/models for the models this gateway serves.")
    return model


async def one_model(request: web.Request) -> web.Response:
    return json_response({"data": model_object(_model(request))})


async def retrieve_model(request: web.Request) -> web.Response:
    """GET /models/{author}/{slug}: one model, bare as OpenAI's models.retrieve reads it (and in `data`)."""
    model = _model(request)
    body = model_object(model)
    return json_response({**body, "object": "model", "owned_by": model.id.split("/", 1)[0], "data": body})


async def model_endpoints(request: web.Request) -> web.Response:
    model = _model(request)
    body = model_object(model)
    return json_response(
        {
            "data": {
                "id": model.id,
                "name": model.name,
                "created": model.created,
                "description": model.description,
                "architecture": body["architecture"],
                "endpoints": endpoint_objects(model, services_of(request).gateway.health),
            }
        }
    )
