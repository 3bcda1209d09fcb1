"""The model catalog: what clients may ask for, each model's endpoints, prices and limits."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tollway.ledger.pricing import Price
from tollway.providers.base import Provider

VARIANT_SUFFIXES = (":floor", ":nitro")
# OpenRouter's moving ids: `~author/name-latest` is the newest model of that family.
LATEST_SUFFIX = "-latest"


@dataclass(frozen=True, slots=True)
class Endpoint:
    provider: Provider
    upstream_model: str
    price: Price
    context_length: int
    max_completion_tokens: int
    max_requests_per_second: int | None = None
    data_collection: str = "deny"  # "allow": this provider may keep or train on prompts
    supports: frozenset[str] | None = None  # request parameters it honours; None = all

    @property
    def provider_name(self) -> str:
        return self.provider.display_name

    @property
    def endpoint_id(self) -> str:
        return f"{self.provider.name}/{self.upstream_model}"


@dataclass(frozen=True, slots=True)
class CatalogModel:
    id: str
    name: str
    description: str
    context_length: int
    max_completion_tokens: int
    created: int
    endpoints: tuple[Endpoint, ...]

    @property
    def cheapest(self) -> Endpoint:
        return min(self.endpoints, key=lambda e: e.price.prompt_femtos + e.price.completion_femtos)

    @property
    def is_free(self) -> bool:
        return all(endpoint.price.is_free for endpoint in self.endpoints)


class Catalog:
    """The models by id; `resolve` also reads variants, configured aliases and `~author/name-latest` ids."""

    def __init__(self, models: list[CatalogModel], aliases: dict[str, str] | None = None) -> None:
        self._models = {model.id: model for model in models}
        self._aliases = dict(aliases or {})

    def __iter__(self) -> Iterator[CatalogModel]:
        return iter(self._models.values())

    def models(self) -> list[CatalogModel]:
        return list(self._models.values())

    def resolve(self, model_id: str) -> CatalogModel | None:
        found = self._models.get(model_id)
        if found is not None:
            return found
        target = self._aliases.get(model_id)
        if target is not None:
            return self._models.get(target)
        if model_id.startswith("~") and model_id.endswith(LATEST_SUFFIX):
            return self.latest(model_id[1 : -len(LATEST_SUFFIX)])
        for suffix in VARIANT_SUFFIXES:
            if model_id.endswith(suffix):
                return self.resolve(model_id[: -len(suffix)])
        return None

    def latest(self, family: str) -> CatalogModel | None:
        """The newest model whose id is `family` or `family-<version>`: the latest `created`, and among
        models created together (a config file's) the one listed last."""
        members = [
            (model.created, index, model)
            for index, model in enumerate(self._models.values())
            if (model.id == family or model.id.startswith(family + "-")) and ":" not in model.id
        ]
        return max(members, key=lambda member: member[:2])[2] if members else None
