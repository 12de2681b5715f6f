"""The endpoints keystead serves, by the names keys are scoped with (`--endpoints`).

A module of its own so the control plane can check a scope without importing the adapters and
their HTTP client."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Endpoint"]


class Endpoint(StrEnum):
    CHAT = "chat.completions"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    MODELS = "models"
    TOKENS = "tokens"  # keystead's own: minting short-lived tokens; never reaches a provider
    # Anthropic's own API, passed through (docs/providers.md): only Anthropic adapters serve it.
    MESSAGES = "messages"
    COUNT_TOKENS = "messages.count_tokens"
    UNKNOWN = "unknown"  # a path the gateway does not serve: recorded, never sent anywhere
