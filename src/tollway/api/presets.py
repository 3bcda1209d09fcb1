"""The presets API (management keys, per account): GET/POST /presets, GET/PATCH/DELETE /presets/{name}.

Also `with_preset`, which the inference endpoints call: a request naming a preset gets its fields.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tollway.api.context import authenticate, require_management, services_of
from tollway.api.http import json_response, query_int, read_json_object
from tollway.audit import Actor
from tollway.auth.records import KeyRecord
from tollway.clock import us_to_iso
from tollway.errors import InvalidRequest
from tollway.gateway.reasoning import parse_reasoning
from tollway.gateway.validation import parse_chat_body
from tollway.presets import (
    Preset,
    PresetRules,
    PresetStore,
    apply_preset,
    check_description,
    check_name,
    named_preset,
    parse_config,
)
from tollway.routing.preferences import parse_preferences
from tollway.services import Services


def preset_object(preset: Preset) -> dict[str, Any]:
    """Tollway's preset fields, plus OpenRouter's (slug, status, designated_version) so its SDK reads them.

    Tollway keeps one version of a preset, changed in place: `designated_version` is always that one.
    """
    created_at = us_to_iso(preset.created_at_us)
    updated_at = us_to_iso(preset.updated_at_us) or created_at
    version_id = f"{preset.id}-current"
    return {
        "id": preset.id,
        "name": preset.name,
        "slug": preset.name,
        "description": preset.description,
        **preset.config(),
        "status": "active",
        "status_updated_at": None,
        "creator_user_id": None,
        "workspace_id": preset.account_id,
        "designated_version_id": version_id,
        "designated_version": {
            "id": version_id,
            "preset_id": preset.id,
            "version": 1,
            "config": preset.config(),
            "system_prompt": None,
            "creator_id": preset.account_id,
            "created_at": created_at,
            "updated_at": updated_at,
        },
        "created_at": created_at,
        "updated_at": updated_at,
    }


def _rules(services: Services) -> PresetRules:
    limit = services.settings.models_fallback_limit
    providers = tuple(services.providers)

    def check_provider(raw: Any) -> None:
        parse_preferences(raw, None, providers, {})

    def check_body(body: dict[str, Any]) -> None:
        chat = parse_chat_body(body, limit)
        parse_reasoning(body, chat.max_tokens or 1024)  # what admission checks beyond the body's own fields

    return PresetRules(
        model_exists=lambda model_id: services.catalog.resolve(model_id) is not None,
        check_body=check_body,
        check_provider=check_provider,
        fallback_limit=limit,
    )


async def _manager(request: web.Request) -> tuple[Services, KeyRecord, PresetStore]:
    key = await authenticate(request)
    require_management(key)
    services = services_of(request)
    return services, key, PresetStore(services.engine)


_EXAMPLE = '{"name": ..., "model": ...}'


async def list_presets(request: web.Request) -> web.Response:
    _services, key, store = await _manager(request)
    offset = query_int(request, "offset", 0, 0, 10**9)
    limit = query_int(request, "limit", 100, 1, 1000)
    found = await store.list(key.account_id)
    page = found[offset : offset + limit]
    return json_response({"data": [preset_object(p) for p in page], "total_count": len(found)})


async def create_preset(request: web.Request) -> web.Response:
    services, key, store = await _manager(request)
    body = await read_json_object(request, services.settings.max_body_bytes, _EXAMPLE)
    name = check_name(body.get("name"))
    description = check_description(body.get("description"))
    config = parse_config(body, _rules(services))
    preset = await store.create(key.account_id, name, description, config, services.clock.now_us())
    await services.audit.record(Actor.key(key), "preset.create", key.account_id, name, None, preset_object(preset))
    return json_response({"data": preset_object(preset)}, status=201)


async def get_preset(request: web.Request) -> web.Response:
    _services, key, store = await _manager(request)
    return json_response({"data": preset_object(await store.require(key.account_id, request.match_info["name"]))})


async def update_preset(request: web.Request) -> web.Response:
    services, key, store = await _manager(request)
    before = await store.require(key.account_id, request.match_info["name"])
    body = await read_json_object(request, services.settings.max_body_bytes, _EXAMPLE)
    if "name" in body and body["name"] != before.name:
        raise InvalidRequest("name cannot change; create a preset with the new name", metadata={"field": "name"})
    description = check_description(body["description"]) if "description" in body else before.description
    config = parse_config(body, _rules(services), base=before)
    preset = await store.update(before, description, config, services.clock.now_us())
    await services.audit.record(
        Actor.key(key), "preset.update", key.account_id, before.name, preset_object(before), preset_object(preset)
    )
    return json_response({"data": preset_object(preset)})


async def delete_preset(request: web.Request) -> web.Response:
    services, key, store = await _manager(request)
    preset = await store.require(key.account_id, request.match_info["name"])
    await store.delete(preset)
    await services.audit.record(
        Actor.key(key), "preset.delete", key.account_id, preset.name, preset_object(preset), None
    )
    return json_response({"deleted": True})


async def with_preset(
    services: Services, key: KeyRecord, body: Any, translated: dict[str, Any] | None = None
) -> tuple[Any, str | None]:
    """The chat request with its preset's fields filled in, and the preset's id (None without a preset).

    `body` is the request as sent (it names the preset); `translated`, for the Responses, legacy
    completions and Messages APIs, is that request as a chat request, which the preset fills.
    """
    chat = body if translated is None else translated
    if not isinstance(body, dict):
        return chat, None
    name = named_preset(body)
    if name is None:
        return chat, None
    preset = await PresetStore(services.engine).require(key.account_id, name)
    return apply_preset(preset, {k: v for k, v in chat.items() if v is not None}), preset.id
