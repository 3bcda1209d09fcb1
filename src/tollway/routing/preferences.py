"""Provider preferences of a request (OpenRouter's `provider` object and :floor / :nitro), and the
pure ordering of a model's endpoints they imply."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tollway.errors import InvalidRequest
from tollway.providers.base import ALL_PARAMETERS
from tollway.routing.catalog import Endpoint

_SORTS = ("price", "throughput", "latency")
# Optional request parameters an endpoint may or may not honour (provider.require_parameters checks these).
PARAMETERS = ALL_PARAMETERS
# Prices in max_price are USD per million tokens; endpoint prices are femto-USD per token.
_FEMTOS_PER_USD_PER_MILLION = 10**9


@dataclass(frozen=True, slots=True)
class Preferences:
    order: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    allow_fallbacks: bool = True
    sort: str | None = None
    max_prompt_femtos: int | None = None
    max_completion_femtos: int | None = None
    max_request_femtos: int | None = None
    deny_data_collection: bool = False
    required_parameters: frozenset[str] = frozenset()

    @property
    def balanced(self) -> bool:
        """Setting sort or order turns off the default price-weighted spread."""
        return self.sort is None and not self.order


def _slugs(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequest(
            f"provider.{name} must be an array of provider slugs", metadata={"field": f"provider.{name}"}
        )
    return tuple(value)


def _price(value: Any, name: str, scale: int) -> int:
    field = {"field": f"provider.max_price.{name}"}
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidRequest(f"provider.max_price.{name} must be a number", metadata=field)
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidRequest(f"provider.max_price.{name} must be a number", metadata=field) from exc
    if not number.is_finite() or number > 10**9:  # NaN, Infinity and 1e999999 are no price
        raise InvalidRequest(f"provider.max_price.{name} must be a finite number of USD up to 1e9", metadata=field)
    if number < 0:
        raise InvalidRequest(f"provider.max_price.{name} must not be negative", metadata=field)
    return int(number * scale)


def parse_preferences(
    raw: Any, variant: str | None, known_providers: Iterable[str], body: dict[str, Any] | None = None
) -> Preferences:
    sort = {":floor": "price", ":nitro": "throughput"}.get(variant or "")
    if raw is None:
        return Preferences(sort=sort)
    if not isinstance(raw, dict):
        raise InvalidRequest("provider must be an object of routing preferences", metadata={"field": "provider"})
    known = set(known_providers)
    order = _slugs(raw["order"], "order") if raw.get("order") is not None else ()
    only = _slugs(raw["only"], "only") if raw.get("only") is not None else None
    ignore = _slugs(raw["ignore"], "ignore") if raw.get("ignore") is not None else ()
    unknown = sorted({slug for slug in (*order, *(only or ()), *ignore) if slug not in known})
    if unknown:
        raise InvalidRequest(
            f"Unknown provider{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in provider preferences; "
            f"known: {', '.join(sorted(known))}",
            metadata={"field": "provider", "unknown": unknown},
        )
    raw_sort = raw.get("sort")
    if isinstance(raw_sort, dict):
        raw_sort = raw_sort.get("by")
    if raw_sort is not None:
        if raw_sort not in _SORTS:
            raise InvalidRequest(
                f"provider.sort must be one of {', '.join(_SORTS)}", metadata={"field": "provider.sort"}
            )
        sort = raw_sort
    allow = raw.get("allow_fallbacks", True)
    if not isinstance(allow, bool):
        raise InvalidRequest("provider.allow_fallbacks must be true or false")
    max_price = raw.get("max_price") or {}
    if not isinstance(max_price, dict):
        raise InvalidRequest('provider.max_price must be an object such as {"prompt": 1, "completion": 2}')
    collection = raw.get("data_collection", "allow")
    if collection not in ("allow", "deny"):
        raise InvalidRequest("provider.data_collection must be allow or deny")
    require = raw.get("require_parameters", False)
    if not isinstance(require, bool):
        raise InvalidRequest("provider.require_parameters must be true or false")
    required = frozenset(name for name in (body or {}) if name in PARAMETERS) if require else frozenset()
    return Preferences(
        order=order,
        only=only,
        ignore=ignore,
        allow_fallbacks=allow,
        sort=sort,
        max_prompt_femtos=_price(max_price["prompt"], "prompt", _FEMTOS_PER_USD_PER_MILLION)
        if "prompt" in max_price
        else None,
        max_completion_femtos=_price(max_price["completion"], "completion", _FEMTOS_PER_USD_PER_MILLION)
        if "completion" in max_price
        else None,
        max_request_femtos=_price(max_price["request"], "request", 10**15) if "request" in max_price else None,
        deny_data_collection=collection == "deny",
        required_parameters=required,
    )


def _allowed(endpoint: Endpoint, prefs: Preferences) -> bool:
    slug = endpoint.provider.name
    price = endpoint.price
    return not (
        (prefs.only is not None and slug not in prefs.only)
        or slug in prefs.ignore
        or (prefs.max_prompt_femtos is not None and price.prompt_femtos > prefs.max_prompt_femtos)
        or (prefs.max_completion_femtos is not None and price.completion_femtos > prefs.max_completion_femtos)
        or (prefs.max_request_femtos is not None and price.request_femtos > prefs.max_request_femtos)
        or (prefs.deny_data_collection and endpoint.data_collection == "allow")
        or (endpoint.supports is not None and not prefs.required_parameters <= endpoint.supports)
    )


def order_endpoints(
    endpoints: Iterable[Endpoint],
    prefs: Preferences,
    available: Callable[[str], bool],
    latency_ms: Callable[[str], float | None],
    throughput: Callable[[str], float | None],
    rng: random.Random,
) -> list[Endpoint]:
    """Endpoints to try, in order. Default: healthy ones first, the first pick weighted by 1/price²."""
    kept = [e for e in endpoints if _allowed(e, prefs)]

    def total_price(endpoint: Endpoint) -> int:
        return endpoint.price.prompt_femtos + endpoint.price.completion_femtos

    if prefs.sort == "throughput":
        ranked = sorted(kept, key=lambda e: -(throughput(e.endpoint_id) or 0.0))
    elif prefs.sort == "latency":
        ranked = sorted(kept, key=lambda e: latency_ms(e.endpoint_id) or float("inf"))
    else:
        ranked = sorted(kept, key=total_price)
    if prefs.order:
        listed = [e for slug in prefs.order for e in ranked if e.provider.name == slug]
        ranked = listed + [e for e in ranked if e not in listed]
    healthy = [e for e in ranked if available(e.endpoint_id)]
    ranked = healthy + [e for e in ranked if e not in healthy]
    if prefs.balanced and len(healthy) > 1:
        weights = [1.0 / max(total_price(e), 1) ** 2 for e in healthy]
        first = rng.choices(healthy, weights=weights, k=1)[0]
        ranked = [first] + [e for e in ranked if e is not first]
    if not prefs.allow_fallbacks:
        ranked = ranked[: max(1, len(prefs.order))] if prefs.order else ranked[:1]
    return ranked
