"""The request's `reasoning` (or `reasoning_effort`) as one plan every provider adapter translates.

OpenRouter's shape: `reasoning {effort | max_tokens, exclude, enabled}`. The plan names a token
budget, which the hold adds to `max_tokens`, so thinking can never cost more than was reserved.
"""

from __future__ import annotations

from typing import Any

from tollway.errors import InvalidRequest
from tollway.providers.base import ReasoningPlan

EFFORTS = ("minimal", "low", "medium", "high")
# The share of max_tokens an effort allows for thinking (OpenRouter's rule for budget-based providers).
EFFORT_RATIO = {"minimal": 0.1, "low": 0.2, "medium": 0.5, "high": 0.8}
MIN_BUDGET_TOKENS = 1024  # Anthropic refuses smaller thinking budgets
MAX_BUDGET_TOKENS = 128_000


def _bad(message: str, field: str) -> InvalidRequest:
    return InvalidRequest(message, metadata={"field": field})


def _effort_for_budget(budget: int, max_tokens: int) -> str:
    ratio = budget / max(max_tokens, 1)
    return "high" if ratio >= 0.8 else "medium" if ratio >= 0.5 else "low"


def parse_reasoning(body: dict[str, Any], max_tokens: int) -> ReasoningPlan | None:
    """The plan for a request, None when it asks for no reasoning; a malformed field is a 400."""
    raw = body.get("reasoning")
    flat_effort = body.get("reasoning_effort")
    if raw is None and flat_effort is None:
        return None
    if raw is None:
        raw = {"effort": flat_effort}
    if not isinstance(raw, dict):
        raise _bad('reasoning must be an object such as {"effort": "high"}', "reasoning")
    enabled = raw.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise _bad("reasoning.enabled must be true or false", "reasoning.enabled")
    exclude = raw.get("exclude", False)
    if not isinstance(exclude, bool):
        raise _bad("reasoning.exclude must be true or false", "reasoning.exclude")
    effort = raw.get("effort")
    if effort is not None and effort not in (*EFFORTS, "none"):
        raise _bad(f"reasoning.effort must be one of {', '.join((*EFFORTS, 'none'))}", "reasoning.effort")
    budget = raw.get("max_tokens")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 0):
        raise _bad("reasoning.max_tokens must be a non-negative integer", "reasoning.max_tokens")
    if enabled is False or effort == "none" or budget == 0:
        return None
    if budget is not None:
        budget = max(MIN_BUDGET_TOKENS, min(budget, MAX_BUDGET_TOKENS))
        return ReasoningPlan(
            effort=effort or _effort_for_budget(budget, max_tokens), budget_tokens=budget, exclude=exclude
        )
    effort = effort or "medium"
    budget = max(MIN_BUDGET_TOKENS, min(int(max_tokens * EFFORT_RATIO[effort]), MAX_BUDGET_TOKENS))
    return ReasoningPlan(effort=effort, budget_tokens=budget, exclude=exclude)
