"""OpenRouter-shaped response bodies: completion, stream chunks and the usage object with its cost."""

from __future__ import annotations

from typing import Any

from tollway.ledger.pricing import Price
from tollway.money import charge_nanos, nanos_to_usd
from tollway.providers.base import Usage


def usage_body(usage: Usage, cost_nanos: int, price: Price) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "cost": nanos_to_usd(cost_nanos),
        "is_byok": False,
        "prompt_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": 0,
            "audio_tokens": 0,
            "video_tokens": 0,
        },
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens, "image_tokens": 0},
        "cost_details": {
            "upstream_inference_cost": None,
            "upstream_inference_prompt_cost": nanos_to_usd(charge_nanos(usage.prompt_tokens * price.prompt_femtos)),
            "upstream_inference_completions_cost": nanos_to_usd(
                charge_nanos(usage.completion_tokens * price.completion_femtos)
            ),
        },
    }


def completion_body(
    *,
    generation_id: str,
    provider_name: str,
    model: str,
    created: int,
    message: dict[str, Any],
    finish_reason: str | None,
    native_finish_reason: str | None,
    logprobs: Any,
    system_fingerprint: str | None,
    usage: dict[str, Any],
) -> dict[str, Any]:
    reply = {"role": "assistant", "content": None, "refusal": None, "reasoning": None, **message}
    return {
        "id": generation_id,
        "provider": provider_name,
        "model": model,
        "object": "chat.completion",
        "created": created,
        "system_fingerprint": system_fingerprint,
        "choices": [
            {
                "index": 0,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
                "native_finish_reason": native_finish_reason,
                "message": reply,
            }
        ],
        "usage": usage,
    }


def chunk_body(
    *,
    generation_id: str,
    provider_name: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": generation_id,
        "provider": provider_name,
        "model": model,
        "object": "chat.completion.chunk",
        "created": created,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    if error is not None:
        body["error"] = error
    return body
