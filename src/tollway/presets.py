"""Presets: an account's named request setups (model, fallback models, provider preferences, default parameters).

A request names one with `"model": "@preset/NAME"` or `"preset": "NAME"`; the preset's fields fill the
request and the request's own fields win. A preset is checked when it is saved (its models must be
served here, its parameters must pass the chat request checks), so using it never fails on its account.
Only a request that names a preset reads one (a single indexed read); others never touch this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.db import tables
from tollway.errors import Conflict, InvalidRequest, NotFound
from tollway.ids import prefixed_id

_P = tables.presets
PRESET_PREFIX = "@preset/"
NAME_PATTERN = re.compile(r"\A[a-z0-9][a-z0-9._-]{0,63}\Z")
# Fields a preset sets apart from its parameters; parameters may not smuggle these in.
_ROUTING_FIELDS = ("model", "models", "provider")
_NOT_PARAMETERS = frozenset({*_ROUTING_FIELDS, "messages", "prompt", "input", "preset", "stream"})
_MAX_PRESETS_PER_ACCOUNT = 1000
_MAX_CONFIG_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Preset:
    id: str
    account_id: str
    name: str
    description: str | None
    model: str | None
    models: tuple[str, ...]
    provider: dict[str, Any] | None
    parameters: dict[str, Any] = field(default_factory=dict)
    created_at_us: int = 0
    updated_at_us: int | None = None

    def config(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "models": list(self.models),
            "provider": self.provider,
            "parameters": self.parameters,
        }


def _bad(message: str, field_name: str) -> InvalidRequest:
    return InvalidRequest(message, metadata={"field": field_name})


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise _bad(
            "name must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
            "name",
        )
    return value


@dataclass(frozen=True, slots=True)
class PresetRules:
    """What a saved preset is checked against: the catalog, the chat body checks, the fallback limit."""

    model_exists: Callable[[str], bool]
    check_body: Callable[[dict[str, Any]], None]  # raises InvalidRequest naming the field
    check_provider: Callable[[Any], None]
    fallback_limit: int


def _model(value: Any, rules: PresetRules) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise _bad("model must be a model id string such as tollway/offline-small, or null", "model")
    if isinstance(value, str) and not rules.model_exists(value):
        raise _bad(f"model {value[:200]!r} is not served here; see GET /api/v1/models", "model")
    return value


def _models(value: Any, rules: PresetRules) -> list[str]:
    models = value if value is not None else []
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise _bad("models must be an array of model id strings", "models")
    if len(models) > rules.fallback_limit:
        raise _bad(f"models array must have {rules.fallback_limit} items or fewer", "models")
    for index, model in enumerate(models):
        if not rules.model_exists(model):
            raise _bad(f"models[{index}] {model[:200]!r} is not served here; see GET /api/v1/models", "models")
    return models


def _parameters(value: Any) -> dict[str, Any]:
    parameters = value if value is not None else {}
    if not isinstance(parameters, dict):
        raise _bad('parameters must be an object of request fields such as {"temperature": 0.2}', "parameters")
    for name in parameters:
        if name in _NOT_PARAMETERS:
            raise _bad(f"parameters.{name} cannot be preset: {name} belongs to each request", "parameters")
    return parameters


def _check_as_request(config: dict[str, Any], rules: PresetRules) -> None:
    """The preset's parameters must pass the checks a request with them would meet."""
    sample = {
        **config["parameters"],
        "model": config["model"] or config["models"][0],
        "messages": [{"role": "user", "content": "check"}],
    }
    try:
        rules.check_body(sample)
    except InvalidRequest as exc:
        raise InvalidRequest(
            f"parameters: {exc.message}", metadata={"field": f"parameters.{exc.metadata.get('field', '')}"}
        ) from exc


def parse_config(body: dict[str, Any], rules: PresetRules, base: Preset | None = None) -> dict[str, Any]:
    """The preset's config from a POST (or, over `base`, a PATCH) body; a precise 400 for anything wrong."""
    config = base.config() if base is not None else {"model": None, "models": [], "provider": None, "parameters": {}}
    if "model" in body:
        config["model"] = _model(body["model"], rules)
    if "models" in body:
        config["models"] = _models(body["models"], rules)
    if "provider" in body:
        if body["provider"] is not None:
            rules.check_provider(body["provider"])
        config["provider"] = body["provider"]
    if "parameters" in body:
        config["parameters"] = _parameters(body["parameters"])
    if not config["model"] and not config["models"]:
        raise _bad("a preset needs a model (or a models array)", "model")
    _check_as_request(config, rules)
    if len(orjson.dumps(config)) > _MAX_CONFIG_BYTES:
        raise _bad(f"the preset is larger than {_MAX_CONFIG_BYTES} bytes of JSON", "parameters")
    return config


def named_preset(body: dict[str, Any]) -> str | None:
    """The preset a request names, if any: `"preset": "NAME"` or `"model": "@preset/NAME"`."""
    model = body.get("model")
    if isinstance(model, str) and model.startswith(PRESET_PREFIX):
        return model[len(PRESET_PREFIX) :]
    preset = body.get("preset")
    if preset is None:
        return None
    if not isinstance(preset, str) or not preset:
        raise _bad("preset must be the name of one of your presets", "preset")
    return preset


def apply_preset(preset: Preset, body: dict[str, Any]) -> dict[str, Any]:
    """The request as sent upstream: the preset's fields, then the request's own (which win)."""
    merged: dict[str, Any] = {**preset.parameters}
    if preset.provider is not None:
        merged["provider"] = preset.provider
    if preset.models:
        merged["models"] = list(preset.models)
    if preset.model:
        merged["model"] = preset.model
    own = {k: v for k, v in body.items() if k != "preset"}
    if isinstance(own.get("model"), str) and own["model"].startswith(PRESET_PREFIX):
        del own["model"]
    merged.update(own)
    return merged


def _preset(row: Any) -> Preset:
    config = orjson.loads(row.config_json)
    return Preset(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        description=row.description,
        model=config.get("model"),
        models=tuple(config.get("models") or ()),
        provider=config.get("provider"),
        parameters=config.get("parameters") or {},
        created_at_us=row.created_at_us,
        updated_at_us=row.updated_at_us,
    )


def check_description(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 1000):
        raise _bad("description must be a string of at most 1000 characters, or null", "description")
    return value


class PresetStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list(self, account_id: str) -> list[Preset]:
        query = select(_P).where(_P.c.account_id == account_id).order_by(_P.c.name)
        async with self._engine.connect() as connection:
            return [_preset(row) for row in (await connection.execute(query)).all()]

    async def get(self, account_id: str, name: str) -> Preset | None:
        if not NAME_PATTERN.match(name):  # no such name can be saved (and NUL bytes never reach PostgreSQL)
            return None
        query = select(_P).where(_P.c.account_id == account_id, _P.c.name == name)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return None if row is None else _preset(row)

    async def require(self, account_id: str, name: str) -> Preset:
        found = await self.get(account_id, name)
        if found is None:
            raise NotFound(
                f"No preset named {name[:64]!r} in this account; see GET /api/v1/presets",
                metadata={"field": "preset"},
            )
        return found

    async def create(
        self, account_id: str, name: str, description: str | None, config: dict[str, Any], now_us: int
    ) -> Preset:
        values = {
            "id": prefixed_id("preset"),
            "account_id": account_id,
            "name": name,
            "description": description,
            "config_json": orjson.dumps(config).decode(),
            "created_at_us": now_us,
            "updated_at_us": None,
        }
        try:
            async with self._engine.begin() as connection:
                count = len((await connection.execute(select(_P.c.id).where(_P.c.account_id == account_id))).all())
                if count >= _MAX_PRESETS_PER_ACCOUNT:
                    raise _bad(f"an account keeps at most {_MAX_PRESETS_PER_ACCOUNT} presets", "name")
                await connection.execute(_P.insert().values(**values))
        except IntegrityError as exc:
            raise Conflict(
                f"A preset named {name!r} exists already; PATCH /api/v1/presets/{name} changes it",
                metadata={"field": "name"},
            ) from exc
        created = await self.get(account_id, name)
        assert created is not None
        return created

    async def update(self, preset: Preset, description: str | None, config: dict[str, Any], now_us: int) -> Preset:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(_P)
                .where(_P.c.id == preset.id)
                .values(description=description, config_json=orjson.dumps(config).decode(), updated_at_us=now_us)
            )
        found = await self.get(preset.account_id, preset.name)
        assert found is not None
        return found

    async def delete(self, preset: Preset) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(delete(_P).where(_P.c.id == preset.id))
