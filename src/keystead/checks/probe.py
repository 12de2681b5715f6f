"""The smallest request a check sends: which endpoint and model, and the body.

A chat model gets a one-token chat completion (`checks.max_tokens`); an embedding model (its
name says "embed", or a provider that serves no chat) the embedding of one short word. A
provider that names no model (only patterns) is asked for its model list, which costs nothing
but proves only the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from keystead.providers.base import Endpoint

if TYPE_CHECKING:
    from keystead.providers.base import Provider

__all__ = ["PROBE_TEXT", "body", "endpoint_for", "provider_model"]

PROBE_TEXT = "ping"


def is_embedding_model(model: str) -> bool:
    return "embed" in model.lower()


def endpoint_for(provider: Provider, model: str | None) -> Endpoint:
    if model is None:
        return Endpoint.MODELS
    caps = provider.capabilities
    if (is_embedding_model(model) or not caps.chat) and caps.embeddings:
        return Endpoint.EMBEDDINGS
    return Endpoint.CHAT


def provider_model(provider: Provider) -> str | None:
    """The model a provider check asks for: its first chat model, else its first embedding
    model, else None (nothing listed by name: the model list is asked for instead)."""
    listed = provider.listed_models
    chat = [m for m in listed if not is_embedding_model(m)]
    if chat and provider.capabilities.chat:
        return chat[0]
    embedding = [m for m in listed if is_embedding_model(m)]
    if embedding and provider.capabilities.embeddings:
        return embedding[0]
    return None if provider.capabilities.list_models else next(iter(listed), None)


def body(endpoint: Endpoint, model: str, provider_type: str, max_tokens: int) -> bytes:
    """The request body for `model` at `endpoint` (OpenAI's format: adapters translate)."""
    if endpoint is Endpoint.EMBEDDINGS:
        return orjson.dumps({"model": model, "input": PROBE_TEXT})
    # OpenAI's own API and Azure's want the current name; every other server knows the old one.
    cap = "max_completion_tokens" if provider_type in ("openai", "azure") else "max_tokens"
    return orjson.dumps({"model": model, cap: max_tokens,
                         "messages": [{"role": "user", "content": PROBE_TEXT}]})
