"""How big a request is before any upstream has counted it: the prompt side of a hold.

Everything the upstream will read counts: the messages with their tool calls, the tool
definitions, JSON schemas and `response_format`. Without a tokenizer for the model the estimate is
UTF-8 bytes / 3, rounded up: no tokenizer in use yields fewer than one token per three bytes of
JSON or text (non-Latin scripts included), so the hold is an upper bound. Images and file pages
are not counted by their encoded bytes (a photo's base64 is not what a model bills) but at a fixed
allowance each.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import orjson

from tollway.usage import estimate_bytes_tokens

# The request fields an upstream reads besides the messages.
PROMPT_FIELDS = ("tools", "tool_choice", "functions", "function_call", "response_format", "prediction")
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


@dataclass(frozen=True, slots=True)
class PromptSize:
    text_tokens: int  # messages, tools and schemas
    images: int
    file_pages: int

    def tokens(self, image_tokens: int, page_tokens: int) -> int:
        return self.text_tokens + self.images * image_tokens + self.file_pages * page_tokens


def _pdf_pages(data_url: str) -> int:
    _, _, payload = data_url.partition(",")
    try:
        raw = base64.b64decode(payload or data_url, validate=False)
    except (binascii.Error, ValueError):
        return 1
    return max(1, len(_PDF_PAGE.findall(raw)))


class _Counter:
    def __init__(self) -> None:
        self.images = 0
        self.pages = 0

    def part(self, part: Any) -> Any:
        """A content part as the estimate reads it: media replaced by a placeholder, counted aside."""
        if not isinstance(part, dict):
            return part
        kind = part.get("type")
        if kind in ("image_url", "image", "input_image"):
            self.images += 1
            return {"type": kind}
        if kind in ("file", "document", "input_file"):
            file = part.get("file") if isinstance(part.get("file"), dict) else part
            data = file.get("file_data") if isinstance(file, dict) else None
            self.pages += _pdf_pages(data) if isinstance(data, str) else 1
            return {"type": kind}
        if kind == "input_audio":
            return {"type": kind}  # audio is billed by the upstream's count; its bytes are no token estimate
        return part

    def message(self, message: Any) -> Any:
        if not isinstance(message, dict):
            return message
        content = message.get("content")
        if isinstance(content, list):
            return {**message, "content": [self.part(p) for p in content]}
        return message


def measure_prompt(body: dict[str, Any], messages: list[dict[str, Any]]) -> PromptSize:
    """Size of the messages and every other field the upstream reads, with images and pages counted."""
    counter = _Counter()
    readable: dict[str, Any] = {"messages": [counter.message(m) for m in messages]}
    for name in PROMPT_FIELDS:
        if body.get(name) is not None:
            readable[name] = body[name]
    try:
        serialised = orjson.dumps(readable)
    except (TypeError, orjson.JSONEncodeError):
        serialised = repr(readable).encode()
    return PromptSize(text_tokens=estimate_bytes_tokens(serialised), images=counter.images, file_pages=counter.pages)
