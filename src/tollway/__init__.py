"""Tollway: a self-hosted, OpenRouter-compatible LLM API gateway with an exact credit ledger."""

__version__ = "0.1.0"
