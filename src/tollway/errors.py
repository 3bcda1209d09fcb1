"""The error tree: every error Tollway raises knows its HTTP status, its typed `error_type` and retryability.

Only the API edge turns these into HTTP responses; domain code raises them without knowing HTTP.
The body shape is OpenRouter's: {"error": {"code": <status>, "message": ..., "metadata": {...}}}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class TollwayError(Exception):
    status = 500
    error_type = "server"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        metadata = {"error_type": self.error_type, **self.metadata}
        return {"error": {"code": self.status, "message": self.message, "metadata": metadata}}


class InvalidRequest(TollwayError):
    status = 400
    error_type = "invalid_request"


class AuthenticationFailed(TollwayError):
    status = 401
    error_type = "authentication"


class PaymentRequired(TollwayError):
    status = 402
    error_type = "payment_required"


class PermissionDenied(TollwayError):
    status = 403
    error_type = "permission_denied"


class NotFound(TollwayError):
    status = 404
    error_type = "not_found"


class Conflict(TollwayError):
    status = 409
    error_type = "conflict"


class PayloadTooLarge(TollwayError):
    status = 413
    error_type = "payload_too_large"


class RateLimited(TollwayError):
    status = 429
    error_type = "rate_limit_exceeded"
    retryable = True


class NotImplementedYet(TollwayError):
    status = 501
    error_type = "not_implemented"


class ProviderError(TollwayError):
    """An upstream answered with an error or nonsense; `upstream_status` keeps what it said.

    The client sees the provider's name, the upstream status and a generic message; the upstream's own
    words (`raw`: its error body, addresses, whatever secrets it holds) stay on the server, for logs.
    """

    status = 502
    error_type = "provider_unavailable"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        upstream_status: int,
        provider_name: str,
        raw: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        merged = {"provider_name": provider_name, "upstream_status": upstream_status, **(metadata or {})}
        super().__init__(message, metadata=merged)
        self.raw = raw
        self.upstream_status = upstream_status
        self.provider_name = provider_name
        # What the client sees: the upstream's own 4xx passes through, everything else is a 502.
        if upstream_status in (400, 408, 413, 422, 429):
            self.status = upstream_status
            self.error_type = {
                400: "invalid_request",
                408: "timeout",
                413: "payload_too_large",
                422: "unprocessable",
                429: "rate_limit_exceeded",
            }[upstream_status]
        self.retryable = upstream_status in (0, 408, 429) or upstream_status >= 500


class ServiceUnavailable(TollwayError):
    status = 503
    error_type = "provider_overloaded"
    retryable = True


class UpstreamTimeout(TollwayError):
    status = 504
    error_type = "timeout"
    retryable = True
