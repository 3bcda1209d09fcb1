"""OpenRouter-shaped response bodies: completion, stream chunks and the usage object with its cost."""

from __future__ import annotations

from typing import Any

from tollway.ledger.pricing import INPUT_KINDS, OUTPUT_KINDS
from tollway.ledger.records import GenerationRecord
from tollway.money import FEMTOS_PER_USD, nanos_to_usd


def usage_body(generation: GenerationRecord) -> dict[str, Any]:
    """OpenRouter's usage object for a settled generation: token kinds, the exact cost, its split."""
    details = generation.cost_details
    femtos = FEMTOS_PER_USD

    def side(*kinds: str) -> float:
        return sum(details.get(kind, 0) for kind in kinds) / femtos

    return {
        "prompt_tokens": generation.tokens_prompt,
        "completion_tokens": generation.tokens_completion,
        "total_tokens": generation.tokens_prompt + generation.tokens_completion,
        "cost": nanos_to_usd(generation.cost_nanos),
        "is_byok": False,
        "prompt_tokens_details": {
            "cached_tokens": generation.tokens_cached,
            "cache_write_tokens": generation.tokens_cache_write,
            "audio_tokens": 0,
            "video_tokens": 0,
        },
        "completion_tokens_details": {"reasoning_tokens": generation.tokens_reasoning, "image_tokens": 0},
        "cost_details": {
            "upstream_inference_cost": None,
            "upstream_inference_prompt_cost": side(*INPUT_KINDS),
            "upstream_inference_completions_cost": side(*OUTPUT_KINDS),
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
