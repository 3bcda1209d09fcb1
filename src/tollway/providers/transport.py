"""The one HTTP exchange every upstream adapter makes, with failures mapped once to ProviderError.

What an upstream said when it failed (its error body, connection errors naming its address) is logged
here and kept on the error as `raw`; clients see only the provider's name, the status and a generic message.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from tollway.errors import ProviderError
from tollway.providers.base import StreamChunk, UpstreamRequest
from tollway.providers.http_client import UpstreamHTTPError, UpstreamPool, UpstreamResponse, UpstreamTooLarge
from tollway.usage import estimate_text_tokens

RAW_LIMIT = 2000
ERROR_BODY_LIMIT = 64 * 1024  # an upstream's error body is read this far at most (only RAW_LIMIT is kept)

log = logging.getLogger("tollway.providers")


class UpstreamTransport:
    def __init__(
        self, pool: UpstreamPool, provider_name: str, timeout_s: float | None, connect_timeout_s: float
    ) -> None:
        self._pool = pool
        self._provider_name = provider_name
        # A provider's own timeout wins; otherwise the pool's first-byte timeout (from the settings).
        self._timeout_s = timeout_s if timeout_s is not None else pool.first_byte_timeout_s
        self._connect_timeout_s = connect_timeout_s

    def error(self, status: int, message: str, raw: str | bytes | None = None) -> ProviderError:
        text = raw[:RAW_LIMIT].decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if text:
            log.warning(
                "upstream error",
                extra={"provider": self._provider_name, "upstream_status": status, "raw": text[:RAW_LIMIT]},
            )
        return ProviderError(message, upstream_status=status, provider_name=self._provider_name, raw=text)

    def too_large(self, exc: UpstreamTooLarge) -> ProviderError:
        """An answer past a size bound: a 502 that another endpoint must not be tried for (same request)."""
        error = self.error(0, "Provider answer was too large", raw=str(exc))
        error.retryable = False
        return error

    async def open(self, url: str, payload: bytes, headers: dict[str, str]) -> UpstreamResponse:
        """POST and return the open response (for streams); an error status is read and raised."""
        try:
            response = await self._pool.request("POST", url, payload, headers, self._timeout_s, self._connect_timeout_s)
        except TimeoutError as exc:
            raise self.error(408, "Provider timed out") from exc
        except UpstreamHTTPError as exc:
            raise self.error(0, "Provider connection failed", raw=str(exc)) from exc
        if response.status >= 400:
            try:
                raw = await response.read(ERROR_BODY_LIMIT)
            except (TimeoutError, UpstreamHTTPError) as exc:
                raw = str(exc).encode()
            finally:
                response.release()
            raise self.error(response.status, "Provider returned error", raw=raw)
        return response

    async def post_json(self, url: str, payload: bytes, headers: dict[str, str]) -> Any:
        """POST and parse the JSON answer; unparseable answers are a 502 like any broken upstream."""
        response = await self.open(url, payload, headers)
        try:
            raw = await response.read()
        except TimeoutError as exc:
            raise self.error(408, "Provider timed out") from exc
        except UpstreamTooLarge as exc:
            raise self.too_large(exc) from exc
        except UpstreamHTTPError as exc:
            raise self.error(0, "Provider connection broke", raw=str(exc)) from exc
        finally:
            response.release()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise self.error(502, "Provider returned an invalid response", raw=raw) from exc


def estimate_tokens(text: str) -> int:
    """Tokens of a text when the upstream did not count them (UTF-8 bytes / 3: an upper bound)."""
    return estimate_text_tokens(text)


class HttpProvider:
    """What every HTTP upstream adapter shares: identity, API root, JSON headers with its auth, the transport."""

    fixed_headers: dict[str, str] = {}  # noqa: RUF012 - read-only per class

    def __init__(
        self,
        *,
        name: str,
        display_name: str,
        base_url: str,
        api_key: str | None,
        pool: UpstreamPool,
        timeout_s: float | None,
        connect_timeout_s: float,
    ) -> None:
        self.name = name
        self.display_name = display_name
        self._root = base_url.rstrip("/")
        self._headers = {
            "Content-Type": "application/json",
            **self.fixed_headers,
            **(self.auth_headers(api_key) if api_key else {}),
        }
        self._transport = UpstreamTransport(pool, display_name, timeout_s, connect_timeout_s)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"}

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def count_prompt(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> int | None:
        return None  # no tokenizer here: the gateway estimates from the request's bytes

    def _error(self, status: int, message: str, raw: str | bytes | None = None) -> ProviderError:
        return self._transport.error(status, message, raw)

    async def _relay(self, url: str, payload: bytes, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        """Open a streamed exchange and translate it with `_events`; transport faults mid-stream are mapped
        once here, and the connection is always given back."""
        response = await self._transport.open(url, payload, self._headers)
        try:
            async for chunk in self._events(response, request):
                yield chunk
        except TimeoutError as exc:
            raise self._error(408, "Provider timed out mid-stream") from exc
        except UpstreamTooLarge as exc:
            raise self._transport.too_large(exc) from exc
        except UpstreamHTTPError as exc:
            raise self._error(0, "Provider connection broke mid-stream", raw=str(exc)) from exc
        finally:
            response.release()

    def _events(self, response: UpstreamResponse, request: UpstreamRequest) -> AsyncIterator[StreamChunk]:
        raise NotImplementedError
