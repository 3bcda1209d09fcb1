"""Stream events passed on as the upstream wrote them: no objects built and no JSON written per chunk.

An OpenAI-compatible stream repeats the same top-level fields (`id`, `object`, `created`, `model`, ...)
before `choices` in every chunk, and OpenRouter's chunks differ from the upstream's only there (the
generation's id, the provider, the model's slug). So the adapter learns those leading bytes from the first
chunk, and a run of later chunks that carry nothing the gateway must read (no finish reason, usage, error,
or reasoning to rename or drop) leaves with the leading bytes swapped for the gateway's own in one
`bytes.replace`: no Python work per chunk. The run is still parsed once, in one call, so that a broken
chunk is caught as before; anything unexpected (the first chunk, the last ones, comments, CRLF line ends,
another layout) goes the parsed way, chunk by chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import orjson

_CHOICES = re.compile(rb'"choices":\[')
# A chunk holding one of these is read (parsed) by the gateway: a finish reason, usage, an error,
# reasoning (renamed or dropped), the end marker. Inside a JSON string every quote is escaped, so a
# match is always structure, never text. Compact JSON only (as OpenAI-compatible servers write it):
# a stream spelled otherwise does not match its learned leading bytes and is read the parsed way.
_MARKERS = (b'"finish_reason":"', b'"usage":{', b'"error"', b'"reasoning', b"[DONE]")
# Leading fields the gateway rewrites: they must all sit before `choices`, so that none is left behind.
_REWRITTEN = frozenset({"id", "object", "created", "model"})
NULL_FINISH = b'"finish_reason":null'
NULL_FINISHES = b'"finish_reason":null,"native_finish_reason":null'
NATIVE_FINISH = b'"native_finish_reason"'


@dataclass(frozen=True, slots=True)
class PassThroughRun:
    """Whole SSE events (`data: {...}` and a blank line each) that all start with `prefix`."""

    data: bytes
    prefix: bytes
    count: int  # events in it

    def events(self) -> list[dict[str, Any]]:
        """The events parsed, for the paths that translate them and for a bill counted locally. Not kept
        from the check in `plain_run`: hundreds of live objects per stream would cost more in the garbage
        collector's passes than parsing again the rare time they are needed."""
        return cast("list[dict[str, Any]]", orjson.loads(_as_array(self.data, self.prefix)))

    def relayed(self, own_prefix: bytes) -> bytes | None:
        """The events with the gateway's leading fields, and `native_finish_reason` beside the open finish
        reason; None when some event does not start with the learned bytes (the length tells: one swap per
        event, or not), so that the run is written the parsed way instead."""
        swapped = self.data.replace(self.prefix, own_prefix)
        if len(swapped) != len(self.data) + self.count * (len(own_prefix) - len(self.prefix)):
            return None
        if NATIVE_FINISH in swapped:  # an upstream that is itself OpenRouter-shaped already says it
            return swapped
        return swapped.replace(NULL_FINISH, NULL_FINISHES)


def learn_prefix(event: bytes) -> tuple[bytes, str | None] | None:
    """The bytes of an event's `data:` line up to and including `"choices":[` (and the upstream's id), when
    they hold every top-level field the gateway rewrites and nothing else it must read; None when the event
    does not have that layout (then every chunk of the stream is read the parsed way)."""
    if not event.startswith(b"data:"):
        return None  # a comment or an event name first: not the plain layout
    line_end = event.find(b"\n")
    match = _CHOICES.search(event, 0, line_end if line_end >= 0 else len(event))
    start = event.find(b"{")
    if match is None or start < 0 or b'": ' in event[: match.end()] or b', "' in event[: match.end()]:
        return None  # not compact JSON
    try:
        leading = orjson.loads(event[start : match.end()] + b"]}")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(leading, dict) or leading.get("choices") != [] or not leading.keys() >= _REWRITTEN:
        return None
    if "usage" in leading or "error" in leading:
        return None
    upstream_id = leading["id"]
    return event[: match.end()], upstream_id if isinstance(upstream_id, str) else None


class MarkerScan:
    """Where the next marker lies in a run, each marker searched once per occurrence (not once per event):
    the scan of a long run stays linear however many of its chunks must be read."""

    __slots__ = ("_next", "_run")

    def __init__(self, run: bytes) -> None:
        self._run = run
        self._next = [run.find(marker) for marker in _MARKERS]

    def event_start(self, at: int) -> int:
        """Where the first event at or after `at` holding a marker starts (the run's length if none)."""
        run, found = self._run, len(self._run)
        for index, position in enumerate(self._next):
            if 0 <= position < at:
                position = self._next[index] = run.find(_MARKERS[index], at)
            if 0 <= position < found:
                found = position
        if found == len(run):
            return found
        cut = run.rfind(b"\n\n", at, found)
        return cut + 2 if cut >= 0 else at


def event_end(run: bytes, at: int) -> int:
    """Where the event starting at `at` ends, after its blank line (LF or CRLF); the run's end if it has none."""
    ends = [end + size for end, size in ((run.find(b"\n\n", at), 2), (run.find(b"\n\r\n", at), 3)) if end >= 0]
    return min(ends) if ends else len(run)


def plain_run(run: bytes, start: int, stop: int, prefix: bytes) -> PassThroughRun | None:
    """The events in run[start:stop] as one pass-through run, when each of them parses, has one choice with
    what clients require and nothing the gateway must read; None otherwise (they are then read one by one).
    That each starts with `prefix` is checked when its leading bytes are swapped (`relayed`)."""
    head = run[start:stop]
    if not head.startswith(prefix) or not head.endswith(b"\n\n") or b"\r" in head:
        return None
    # All events parsed in one call: `data: {a}\n\ndata: {b}\n\n` read as `[{a},{b}]`; a comment, an event
    # name or a line of another layout among them does not parse, nor does a broken chunk.
    try:
        count = len(orjson.loads(_as_array(head, prefix)))
    except orjson.JSONDecodeError:
        return None  # a broken chunk: the parsed path reports it
    # One choice per chunk, carrying `index`, `delta` as an object and no finish reason: counted, not looked
    # up chunk by chunk. Only choices have `delta` and `finish_reason` (tool calls have an `index` too);
    # anything spelled in a way the markers missed fails the counts.
    if head.count(NULL_FINISH) != count or head.count(b'"finish_reason"') != count:
        return None
    if head.count(b'"delta":{') != count or head.count(b'"index"') < count:
        return None
    if b'"usage"' in head and head.count(b'"usage"') != head.count(b'"usage":null'):
        return None
    return PassThroughRun(head, prefix, count)


def _as_array(events: bytes, prefix: bytes) -> bytes:
    """`data: {a}\n\ndata: {b}\n\n` as `[{a},{b}]`: all events parsed in one call."""
    field = prefix[: prefix.find(b"{")]
    return b"[" + events[len(field) : -2].replace(b"\n\n" + field, b",") + b"]"
