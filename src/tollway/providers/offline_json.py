"""Schema-valid JSON for the offline provider: structured outputs and tool arguments without a model.

A JSON Schema (the subset structured outputs and tool definitions use: types, properties, required,
items, enum, const, anyOf/oneOf/allOf, $ref into $defs, minItems, minLength, numeric bounds) is
turned into one deterministic instance, with words drawn from the given supply for strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_MAX_DEPTH = 12


class SchemaError(ValueError):
    """A schema the generator cannot satisfy (a broken $ref, an impossible bound)."""


def instance(schema: Any, words: Iterator[str]) -> Any:
    """One value that validates against `schema`."""
    root = schema if isinstance(schema, dict) else {}
    return _value(root, root, words, 0)


def _resolve(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise SchemaError(f"only local $ref are supported, got {ref!r}")
    node: Any = root
    for name in ref[2:].split("/"):
        if not isinstance(node, dict) or name not in node:
            raise SchemaError(f"$ref {ref!r} points nowhere")
        node = node[name]
    if not isinstance(node, dict):
        raise SchemaError(f"$ref {ref!r} is not a schema")
    return node


def _value(schema: dict[str, Any], root: dict[str, Any], words: Iterator[str], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return None
    if isinstance(schema.get("$ref"), str):
        return _value(_resolve(schema["$ref"], root), root, words, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            usable = [o for o in options if isinstance(o, dict) and o.get("type") != "null"] or options
            return _value(usable[0], root, words, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.update(part)
        return _value(merged, root, words, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return {}
        return {
            name: _value(sub if isinstance(sub, dict) else {}, root, words, depth + 1)
            for name, sub in properties.items()
        }
    if kind == "array":
        items: dict[str, Any] = schema["items"] if isinstance(schema.get("items"), dict) else {}
        size = max(1, int(schema.get("minItems") or 0))
        return [_value(items, root, words, depth + 1) for _ in range(size)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        number = int(low) + 1 if isinstance(low, (int, float)) and not isinstance(low, bool) else 1
        high = schema.get("maximum")
        if isinstance(high, (int, float)) and not isinstance(high, bool) and number > high:
            number = int(high)
        return number if kind == "integer" else float(number)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = next(words)
    while len(text) < int(schema.get("minLength") or 0):
        text += " " + next(words)
    return text
