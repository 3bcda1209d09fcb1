"""GET /api/v1/openapi.json (an OpenAPI 3.1 document of every public endpoint) and GET /docs/api (the same
document as a readable page, no JavaScript).

The document is generated: paths from OPERATIONS below (method, path, the request and response models),
component schemas from those pydantic models (api/schemas.py, api/schemas_account.py) by pydantic's own
JSON Schema generator. Tests hold every body the handlers send against it, and a schema-driven fuzzer
(tests/fuzz) sends it generated requests. A new endpoint adds one Operation here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from tollway import __version__
from tollway.api import schemas as inference
from tollway.api import schemas_account as account
from tollway.api.http import json_response
from tollway.api.openapi_page import render_page

API = "/api/v1"
_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    where: str  # "query" or "path"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    response: type[BaseModel] | None
    request: type[BaseModel] | None = None
    auth: str = "key"  # key, management, admin, none, signature
    status: int = 200
    event: type[BaseModel] | None = None  # with stream: true, answers text/event-stream events of this shape
    params: tuple[Param, ...] = ()
    example: dict[str, Any] | None = None
    description: str = ""


_MODEL_PATH = (
    Param("author", "path", {"type": "string"}, required=True),
    Param("slug", "path", {"type": "string"}, required=True),
)
_PAGE = (
    Param("limit", "query", {"type": "integer", "minimum": 1}, "Items per page"),
    Param("offset", "query", {"type": "integer", "minimum": 0}, "Items to skip"),
)
_HASH = (Param("hash", "path", {"type": "string"}, "The key's hash", required=True),)
_ACCOUNT = (Param("account_id", "path", {"type": "string"}, required=True),)
_PRESET = (Param("name", "path", {"type": "string"}, "The preset's name", required=True),)
_RESPONSE_ID = (Param("response_id", "path", {"type": "string"}, required=True),)
_HELLO = [{"role": "user", "content": "Hello"}]

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post", f"{API}/chat/completions", "createChatCompletion", "Create a chat completion", "Inference",
        inference.ChatCompletion, inference.ChatCompletionRequest, event=inference.ChatCompletionChunk,
        example={"model": "tollway/offline-small", "messages": _HELLO},
        description="Held, routed (with fallbacks), billed exactly; the usage object carries `cost` in USD.",
    ),
    Operation(
        "post", f"{API}/responses", "createResponse", "Create a response (OpenAI Responses API)", "Inference",
        inference.ResponseObject, inference.ResponsesRequest, event=inference.ResponseStreamEvent,
        example={"model": "tollway/offline-small", "input": "Hello", "instructions": "Be brief."},
        description="Stateless: send the whole conversation in `input`; `store: true` and "
        "`previous_response_id` are refused. Billed exactly like chat completions.",
    ),
    Operation("get", API + "/responses/{response_id}", "getResponse", "Not stored: always 404 (stateless API)",
              "Inference", inference.ResponseObject, params=_RESPONSE_ID),
    Operation("delete", API + "/responses/{response_id}", "deleteResponse", "Not stored: always 404 (stateless API)",
              "Inference", account.Deleted, params=_RESPONSE_ID),
    Operation(
        "post", f"{API}/completions", "createCompletion", "Create a text completion (legacy)", "Inference",
        inference.TextCompletion, inference.CompletionRequest, event=inference.TextCompletion,
        example={"model": "tollway/offline-small", "prompt": "Once upon a time", "max_tokens": 16},
    ),
    Operation(
        "post", f"{API}/messages", "createMessage", "Create a message (Anthropic Messages API)", "Inference",
        inference.AnthropicMessage, inference.AnthropicMessagesRequest, event=inference.AnthropicStreamEvent,
        example={"model": "tollway/offline-small", "max_tokens": 64, "messages": _HELLO},
        description="Also authenticates with `x-api-key`.",
    ),
    Operation(
        "post", f"{API}/embeddings", "createEmbeddings", "Create embeddings", "Inference",
        inference.EmbeddingsResponse, inference.EmbeddingsRequest,
        example={"model": "tollway/offline-embed", "input": "Hello"},
    ),
    Operation("get", f"{API}/models", "listModels", "List models", "Models", account.ModelList, auth="none",
              params=_PAGE),
    Operation("get", f"{API}/models/count", "countModels", "Count models", "Models", account.ModelCount,
              auth="none"),
    Operation("get", API + "/model/{author}/{slug}", "getModel", "Get a model", "Models", account.OneModel,
              auth="none", params=_MODEL_PATH),
    Operation("get", API + "/models/{author}/{slug}", "retrieveModel", "Get a model (OpenAI models.retrieve)", "Models",
              account.RetrievedModel, auth="none", params=_MODEL_PATH),
    Operation("get", API + "/models/{model_id}", "retrieveModelEncoded", "Get a model by its URL-encoded id",
              "Models", account.RetrievedModel, auth="none",
              params=(Param("model_id", "path", {"type": "string"}, "The model id, / sent as %2F", required=True),)),
    Operation("get", API + "/models/{author}/{slug}/endpoints", "listModelEndpoints", "List a model's endpoints",
              "Models", account.ModelEndpoints, auth="none", params=_MODEL_PATH),
    Operation("get", f"{API}/key", "getCurrentKey", "The calling key: usage, limit, rate limit", "Account",
              account.CurrentKeyBody),
    Operation("get", f"{API}/auth/key", "getCurrentKeyLegacy", "The calling key (older path)", "Account",
              account.CurrentKeyBody),
    Operation("get", f"{API}/credits", "getCredits", "The account's credits and usage", "Account",
              account.CreditsBody),
    Operation("get", f"{API}/balance", "getBalance", "Balance, holds, limits and why requests were refused",
              "Account", account.BalanceBody),
    Operation("get", f"{API}/generation", "getGeneration", "One generation: tokens, cost, attempts", "Account",
              account.GenerationBody,
              params=(Param("id", "query", {"type": "string"}, "The generation id", required=True),)),
    Operation("get", f"{API}/audit", "listAudit", "The account's audit log", "Account", account.DataList,
              auth="management", params=_PAGE),
    Operation("get", f"{API}/keys", "listKeys", "List the account's keys", "Keys", account.KeyList,
              auth="management", params=(*_PAGE, Param("include_disabled", "query", {"type": "boolean"}))),
    Operation("post", f"{API}/keys", "createKey", "Create a key", "Keys", account.KeyCreated,
              account.KeyCreateRequest, auth="management", status=201,
              example={"name": "ci", "limit": 5, "limit_reset": "monthly"}),
    Operation("get", API + "/keys/{hash}", "getKey", "Get a key", "Keys", account.KeyBody, auth="management",
              params=_HASH),
    Operation("patch", API + "/keys/{hash}", "updateKey", "Update a key", "Keys", account.KeyBody,
              account.KeyUpdateRequest, auth="management", params=_HASH, example={"disabled": True}),
    Operation("delete", API + "/keys/{hash}", "deleteKey", "Delete a key", "Keys", account.Deleted,
              auth="management", params=_HASH),
    Operation("get", f"{API}/activity", "getActivity", "Requests, tokens and spend per day, model and key (30 days)",
              "Account", account.ActivityList, auth="management",
              params=(Param("date", "query", {"type": "string", "format": "date"}, "Only this UTC day"),
                      Param("api_key_hash", "query", {"type": "string"}, "Only this key"))),
    Operation("get", f"{API}/presets", "listPresets", "List the account's presets", "Presets", account.PresetList,
              auth="management", params=_PAGE),
    Operation("post", f"{API}/presets", "createPreset", "Save a preset (its models must be served here)", "Presets",
              account.PresetBody, account.PresetRequest, auth="management", status=201,
              example={"name": "team", "model": "tollway/offline-small", "parameters": {"temperature": 0.2}},
              description='Use it with `"model": "@preset/NAME"` or `"preset": "NAME"`; request fields win.'),
    Operation("get", API + "/presets/{name}", "getPreset", "Get a preset", "Presets", account.PresetBody,
              auth="management", params=_PRESET),
    Operation("patch", API + "/presets/{name}", "updatePreset", "Change a preset (fields left out are kept)",
              "Presets", account.PresetBody, account.PresetUpdateRequest, auth="management", params=_PRESET),
    Operation("delete", API + "/presets/{name}", "deletePreset", "Delete a preset", "Presets", account.Deleted,
              auth="management", params=_PRESET),
    Operation("post", f"{API}/credits/checkout", "createCheckout", "Buy credits (Stripe or crypto)", "Payments",
              account.DataObject, account.CheckoutRequest, auth="management", example={"amount": "10"}),
    Operation("get", f"{API}/credits/purchases", "listPurchases", "The account's purchases", "Payments",
              account.DataList),
    Operation("get", f"{API}/credits/auto-recharge", "getAutoRecharge", "Auto-recharge settings", "Payments",
              account.DataObject, auth="management"),
    Operation("put", f"{API}/credits/auto-recharge", "putAutoRecharge", "Change auto-recharge", "Payments",
              account.DataObject, account.AutoRechargeRequest, auth="management",
              example={"threshold": "5", "amount": "20"}),
    Operation("post", f"{API}/credits/auto-recharge/setup", "setupAutoRecharge", "Save a card for auto-recharge",
              "Payments", account.DataObject, auth="management"),
    Operation("post", f"{API}/webhooks/stripe", "stripeWebhook", "Stripe events (signed)", "Payments",
              account.WebhookAck, auth="signature"),
    Operation("post", f"{API}/webhooks/crypto", "cryptoWebhook", "Crypto payment events (signed)", "Payments",
              account.WebhookAck, auth="signature"),
    Operation("post", f"{API}/admin/accounts", "adminCreateAccount", "Create an account", "Admin",
              account.DataObject, account.AccountCreateRequest, auth="admin", status=201),
    Operation("get", f"{API}/admin/accounts", "adminListAccounts", "List accounts", "Admin", account.DataList,
              auth="admin"),
    Operation("get", API + "/admin/accounts/{account_id}/balance", "adminAccountBalance", "An account's figures",
              "Admin", account.DataObject, auth="admin", params=_ACCOUNT),
    Operation("post", API + "/admin/accounts/{account_id}/credits", "adminGrantCredits", "Grant credits", "Admin",
              account.DataObject, account.GrantRequest, auth="admin", status=201, params=_ACCOUNT),
    Operation("post", API + "/admin/accounts/{account_id}/keys", "adminCreateKey", "Create a key for an account",
              "Admin", account.KeyCreated, account.AdminKeyCreateRequest, auth="admin", status=201, params=_ACCOUNT),
    Operation("get", API + "/admin/accounts/{account_id}/keys", "adminAccountKeys", "An account's keys", "Admin",
              account.DataList, auth="admin", params=_ACCOUNT),
    Operation("get", API + "/admin/accounts/{account_id}/ledger", "adminAccountLedger", "An account's entries",
              "Admin", account.DataList, auth="admin", params=_ACCOUNT),
    Operation("get", API + "/admin/accounts/{account_id}/limits", "adminGetAccountLimits", "An account's limits",
              "Admin", account.DataObject, auth="admin", params=_ACCOUNT),
    Operation("put", API + "/admin/accounts/{account_id}/limits", "adminPutAccountLimits", "Set an account's limits",
              "Admin", account.DataObject, account.DataObject, auth="admin", params=_ACCOUNT),
    Operation("get", API + "/admin/keys/{hash}/limits", "adminGetKeyLimits", "A key's limits", "Admin",
              account.DataObject, auth="admin", params=_HASH),
    Operation("put", API + "/admin/keys/{hash}/limits", "adminPutKeyLimits", "Set a key's limits", "Admin",
              account.DataObject, account.DataObject, auth="admin", params=_HASH),
    Operation("post", f"{API}/assistant", "askAssistant", "Ask the support assistant about this account", "Account",
              account.DataObject, account.AssistantRequest, event=account.AssistantStreamEvent,
              example={"messages": [{"role": "user", "content": "Why was my request refused?"}]},
              description="Answers from the account's live figures, citing the README; see docs/support.md."),
    Operation("get", f"{API}/openapi.json", "getOpenApi", "This document", "Meta", None, auth="none"),
    Operation("get", "/health", "health", "The process answers", "Meta", account.Health, auth="none"),
    Operation("get", f"{API}/health", "apiHealth", "The process answers (as /health)", "Meta", account.Health,
              auth="none"),
    Operation("get", "/ready", "ready", "The database is reachable and the ledger writes (503 if not)", "Meta",
              account.Ready, auth="none"),
)  # fmt: skip

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "key": [{"apiKey": []}],
    "management": [{"managementKey": []}],
    "admin": [{"adminToken": []}],
}


def _operation(op: Operation) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": {"$ref": _REF.format(model=op.response.__name__)}}}
    else:
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    if op.event is not None:
        success["content"]["text/event-stream"] = _event_stream(op.event)
    body: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {
            str(op.status): success,
            "default": {
                "description": "An error: 400 bad field, 401 bad key, 402 no credits, 403, 404, 413, 429, 5xx",
                "content": {"application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}},
            },
        },
    }
    if op.description:
        body["description"] = op.description
    if op.auth in _SECURITY:
        body["security"] = _SECURITY[op.auth]
    elif op.auth == "none":
        body["security"] = []
    if op.params:
        body["parameters"] = [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required,
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
            }
            for p in op.params
        ]
    if op.request is not None:
        media: dict[str, Any] = {"schema": {"$ref": _REF.format(model=op.request.__name__)}}
        if op.example is not None:
            media["example"] = op.example
        body["requestBody"] = {"required": True, "content": {"application/json": media}}
    return body


def _event_stream(event: type[BaseModel]) -> dict[str, Any]:
    """Server-sent events: `schema` describes one event (the OpenAPI 3.1 reading, 3.2's itemSchema), whose
    `data` is JSON of the event model, or OpenAI's closing `[DONE]`."""
    payload = {"$ref": _REF.format(model=event.__name__)}
    data = {"type": "string", "contentMediaType": "application/json", "contentSchema": payload}
    return {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {"event": {"type": "string"}, "data": {"anyOf": [{"const": "[DONE]"}, data]}},
        },
        "x-event-schema": payload,
    }


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ErrorBody": inference.ErrorBody}
    for op in OPERATIONS:
        for model in (op.request, op.response, op.event):
            if model is not None:
                found[model.__name__] = model
    return list(found.values())


@functools.cache
def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document (built once; it depends on code only)."""
    _, definitions = models_json_schema([(m, "validation") for m in _models()], ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tollway API",
            "version": __version__,
            "description": "An OpenRouter-compatible LLM API gateway with exact prepaid credits. "
            "Amounts are USD; the ledger keeps integer nano-USD.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "An inference key sk-tw-v1-..."},
                "managementKey": {"type": "http", "scheme": "bearer", "description": "A management key"},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "The operator's admin token"},
            },
        },
    }


async def openapi_json(_request: web.Request) -> web.Response:
    return json_response(document())


async def docs_page(_request: web.Request) -> web.Response:
    return web.Response(text=render_page(document()), content_type="text/html")
