"""Shapes of the models, key, credits, generation, keys, payments and admin endpoints (see api/schemas.py).

Fields the handlers always send are required; figures are USD floats (integer nano-USD on the ledger).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tollway.api.schemas import JsonObject, Shape


class ModelObject(Shape):
    id: str
    name: str
    created: int
    description: str | None
    context_length: int | None
    pricing: dict[str, str] = Field(description="USD per token (or per request, image, search) as decimal strings")
    supported_parameters: list[str]
    architecture: JsonObject
    top_provider: JsonObject


class ModelList(Shape):
    data: list[ModelObject]
    total_count: int | None = None


class OneModel(Shape):
    data: ModelObject


class RetrievedModel(ModelObject):
    """The model bare, as OpenAI's models.retrieve reads it, and again under `data`."""

    object: Literal["model"]
    owned_by: str
    data: ModelObject


class ModelCount(Shape):
    data: dict[str, int]


class EndpointObject(Shape):
    name: str
    provider_name: str
    context_length: int | None
    pricing: dict[str, str]
    supported_parameters: list[str]


class ModelEndpoints(Shape):
    data: dict[str, Any] = Field(description="{id, name, created, description, architecture, endpoints: [...]}")


class CurrentKey(Shape):
    label: str
    usage: float
    limit: float | None
    is_free_tier: bool


class CurrentKeyBody(Shape):
    data: CurrentKey


class Credits(Shape):
    total_credits: float
    total_usage: float


class CreditsBody(Shape):
    data: Credits


class BalanceBody(Shape):
    data: JsonObject = Field(description="balance, total_credits, total_usage, held_in_flight, key, explanations ...")


class Generation(Shape):
    id: str
    total_cost: float
    model: str
    tokens_prompt: int
    tokens_completion: int
    streamed: bool
    created_at: str


class GenerationBody(Shape):
    data: Generation


class KeyObject(Shape):
    hash: str
    name: str | None
    label: str
    disabled: bool
    limit: float | None
    usage: float
    created_at: str


class KeyList(Shape):
    data: list[KeyObject]


class KeyBody(Shape):
    data: KeyObject


class KeyCreated(Shape):
    data: KeyObject
    key: str = Field(description="The key itself, shown once")


class KeyCreateRequest(Shape):
    name: str = Field(min_length=1, max_length=256)
    limit: float | None = Field(default=None, ge=0)
    limit_reset: Literal["daily", "weekly", "monthly"] | None = None
    include_byok_in_limit: bool | None = None
    expires_at: str | None = Field(default=None, description="ISO 8601 time in the future, or null")


class AdminKeyCreateRequest(KeyCreateRequest):
    management: bool | None = Field(default=False, description="A management key (provisions the account's keys)")


class KeyUpdateRequest(Shape):
    name: str | None = Field(default=None, min_length=1, max_length=256)
    disabled: bool | None = None
    limit: float | None = Field(default=None, ge=0)
    limit_reset: Literal["daily", "weekly", "monthly"] | None = None
    include_byok_in_limit: bool | None = None
    expires_at: str | None = Field(default=None, description="ISO 8601 UTC time in the future, or null: never")


class PresetRequest(Shape):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    description: str | None = Field(default=None, max_length=1000)
    model: str | None = Field(default=None, description="A model id (or alias) served here")
    models: list[str] | None = Field(default=None, description="Fallback model ids, tried in order")
    provider: JsonObject | None = Field(default=None, description="Provider routing preferences")
    parameters: JsonObject | None = Field(default=None, description="Default request fields, e.g. temperature")


class PresetUpdateRequest(Shape):
    description: str | None = Field(default=None, max_length=1000)
    model: str | None = None
    models: list[str] | None = None
    provider: JsonObject | None = None
    parameters: JsonObject | None = None


class PresetObject(Shape):
    id: str
    name: str
    description: str | None
    model: str | None
    models: list[str]
    provider: JsonObject | None
    parameters: JsonObject
    slug: str
    status: Literal["active"]
    workspace_id: str
    designated_version: JsonObject = Field(description="OpenRouter's version object: Tollway keeps one version")
    created_at: str
    updated_at: str


class PresetBody(Shape):
    data: PresetObject


class PresetList(Shape):
    data: list[PresetObject]
    total_count: int


class ActivityItem(Shape):
    date: str = Field(description="UTC day, YYYY-MM-DD")
    model: str
    model_permaslug: str
    endpoint_id: str
    provider_name: str
    key_hash: str | None
    key_name: str | None
    usage: float = Field(description="Spend in USD")
    byok_usage_inference: float
    requests: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cached_tokens: int


class ActivityList(Shape):
    data: list[ActivityItem]


class Deleted(Shape):
    deleted: Literal[True]


class DataList(Shape):
    data: list[JsonObject]


class DataObject(Shape):
    data: JsonObject


class CheckoutRequest(Shape):
    amount: float | str = Field(description="USD to buy")
    provider: Literal["stripe", "crypto"] | None = "stripe"


class AutoRechargeRequest(Shape):
    enabled: bool | None = None
    threshold: float | str | None = None
    amount: float | str | None = None


class WebhookAck(Shape):
    received: bool
    outcome: str | None = None


class Health(Shape):
    status: str


class Ready(Shape):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]


class AccountCreateRequest(Shape):
    email: str | None = None


class GrantRequest(Shape):
    amount: float | str
    reason: str | None = None


class AssistantTurn(Shape):
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)


class AssistantRequest(Shape):
    messages: list[AssistantTurn] = Field(min_length=1, description="The conversation; the last turn is the question")
    stream: bool | None = False


class AssistantStreamEvent(Shape):
    """Pieces of the answer as {"delta": "..."}, then {"data": <the whole answer object>}, then [DONE]."""

    delta: str | None = None
    data: JsonObject | None = None
