"""The OpenAPI document as one readable HTML page (GET /docs/api): endpoints by tag, their parameters,
request and response fields with types, and a curl example. Server-rendered, no JavaScript."""

from __future__ import annotations

import json
from html import escape
from typing import Any

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#1d2330}
h1{margin-bottom:0}h2{border-bottom:2px solid #dde;padding-bottom:.2em;margin-top:2em}
.op{border:1px solid #dde;border-radius:6px;padding:.6em 1em;margin:1em 0}
.method{font-weight:700;text-transform:uppercase;display:inline-block;min-width:4.5em}
.get{color:#1765b5}.post{color:#137a3a}.put,.patch{color:#9a6500}.delete{color:#b3261e}
code,pre{font-family:ui-monospace,monospace;font-size:13px}pre{background:#f4f5f8;padding:.7em;overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.4em 0}td,th{border-bottom:1px solid #eee;padding:.2em .5em;
text-align:left;vertical-align:top}th{font-weight:600;background:#fafafc}nav a{margin-right:1em}
.auth{color:#666;font-size:13px}
"""
_AUTH = {
    "apiKey": "Authorization: Bearer <API key>",
    "managementKey": "Authorization: Bearer <management key>",
    "adminToken": "Authorization: Bearer <admin token>",
}


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f'<a href="#schema-{escape(name)}">{escape(name)}</a>'
    if "anyOf" in schema:
        return " | ".join(_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(escape(json.dumps(value)) for value in schema["enum"])
    if "const" in schema:
        return escape(json.dumps(schema["const"]))
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'])}"
    return escape(str(kind))


def _fields(schema: dict[str, Any]) -> str:
    properties = schema.get("properties") or {}
    if not properties:
        return ""
    required = set(schema.get("required") or [])
    rows = []
    for name, field in properties.items():
        limits = ", ".join(
            f"{word} {field[word]}" for word in ("minimum", "maximum", "minLength", "maxLength") if word in field
        )
        note = escape(field.get("description", "")) + (f" <i>({escape(limits)})</i>" if limits else "")
        rows.append(
            f"<tr><td><code>{escape(name)}</code></td><td>{_type(field)}</td>"
            f"<td>{'yes' if name in required else ''}</td><td>{note}</td></tr>"
        )
    return "<table><tr><th>field</th><th>type</th><th>required</th><th>notes</th></tr>" + "".join(rows) + "</table>"


def _curl(path: str, method: str, operation: dict[str, Any]) -> str:
    parts = [f"curl -X {method.upper()} http://localhost:8080{path}"]
    if operation.get("security"):
        parts.append('  -H "Authorization: Bearer $TOLLWAY_KEY"')
    example = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json", {}).get("example")
    if example is not None:
        parts.append('  -H "Content-Type: application/json"')
        parts.append(f"  -d '{json.dumps(example)}'")
    return " \\\n".join(parts)


def _operation(path: str, method: str, operation: dict[str, Any]) -> str:
    html = [f'<div class="op" id="{escape(operation["operationId"])}">']
    html.append(f'<div><span class="method {method}">{method}</span> <code>{escape(path)}</code> — ')
    html.append(f"{escape(operation['summary'])}</div>")
    security = operation.get("security") or []
    auth = ", ".join(_AUTH.get(name, name) for option in security for name in option) or "none"
    html.append(f'<div class="auth">Authentication: {escape(auth)}</div>')
    if operation.get("description"):
        html.append(f"<p>{escape(operation['description'])}</p>")
    if operation.get("parameters"):
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td><td>{_type(p['schema'])}</td>"
            f"<td>{'yes' if p.get('required') else ''}</td><td>{escape(p.get('description', ''))}</td></tr>"
            for p in operation["parameters"]
        )
        html.append(
            "<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>notes</th></tr>"
            + rows
            + "</table>"
        )
    body = ((operation.get("requestBody") or {}).get("content") or {}).get("application/json")
    if body:
        html.append(f"<div>Request body: {_type(body['schema'])}</div>")
    for status, response in operation["responses"].items():
        content = response.get("content") or {}
        kinds = ", ".join(
            f"{escape(media)} {_type(spec.get('x-event-schema') or spec['schema'])}" for media, spec in content.items()
        )
        html.append(f"<div>Response <b>{escape(status)}</b>: {kinds}</div>")
    html.append(f"<pre>{escape(_curl(path, method, operation))}</pre></div>")
    return "".join(html)


def render_page(document: dict[str, Any]) -> str:
    by_tag: dict[str, list[str]] = {}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            by_tag.setdefault(operation["tags"][0], []).append(_operation(path, method, operation))
    info = document["info"]
    html = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(info['title'])} reference</title>",
        f"<style>{_STYLE}</style></head><body><h1>{escape(info['title'])} {escape(info['version'])}</h1>",
        f'<p>{escape(info["description"])} Machine-readable: <a href="/api/v1/openapi.json">OpenAPI 3.1</a>.</p>',
        "<nav>" + "".join(f'<a href="#tag-{escape(tag)}">{escape(tag)}</a>' for tag in by_tag),
        '<a href="#schemas">Schemas</a></nav>',
    ]
    for tag, operations in by_tag.items():
        html.append(f'<h2 id="tag-{escape(tag)}">{escape(tag)}</h2>' + "".join(operations))
    html.append('<h2 id="schemas">Schemas</h2>')
    for name, schema in document["components"]["schemas"].items():
        description = escape(schema.get("description", ""))
        html.append(f'<h3 id="schema-{escape(name)}">{escape(name)}</h3><p>{description}</p>{_fields(schema)}')
    html.append("</body></html>")
    return "".join(html)
