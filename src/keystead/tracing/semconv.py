"""Attribute names and values of the spans keystead writes.

The GenAI names follow the OpenTelemetry GenAI semantic conventions (checked against
opentelemetry-semantic-conventions 0.66b2, where they are marked as moved to the
semantic-conventions-genai repository under the same names). `gen_ai.system` is the older
name of `gen_ai.provider.name`; both are written so older back ends still group by it.
"""

from __future__ import annotations

from keystead.providers.endpoints import Endpoint

__all__ = ["ATTEMPT", "HTTP", "KEYSTEAD", "OPERATION", "GenAI", "clean", "provider_name"]


class GenAI:
    OPERATION = "gen_ai.operation.name"
    PROVIDER = "gen_ai.provider.name"
    SYSTEM = "gen_ai.system"
    REQUEST_MODEL = "gen_ai.request.model"
    REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
    REQUEST_STREAM = "gen_ai.request.stream"
    RESPONSE_MODEL = "gen_ai.response.model"
    RESPONSE_ID = "gen_ai.response.id"
    FINISH_REASONS = "gen_ai.response.finish_reasons"
    TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
    INPUT_TOKENS = "gen_ai.usage.input_tokens"
    OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
    CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"


class HTTP:
    METHOD = "http.request.method"
    ROUTE = "http.route"
    STATUS = "http.response.status_code"
    ERROR_TYPE = "error.type"
    SERVER_ADDRESS = "server.address"
    SERVER_PORT = "server.port"


class KEYSTEAD:
    REQUEST_ID = "keystead.request_id"
    KEY = "keystead.key.public_id"
    TEAM = "keystead.team"
    ENV = "keystead.env"
    ROUTE = "keystead.route"
    PROVIDER = "keystead.provider"
    DEPLOYMENT = "keystead.deployment"
    COST = "keystead.cost_usd"
    CACHE = "keystead.cache"
    ATTEMPTS = "keystead.attempts"
    FALLBACK = "keystead.fallback"
    DEGRADED = "keystead.degraded"
    ERROR_CODE = "keystead.error_code"
    USAGE_ESTIMATED = "keystead.usage_estimated"


class ATTEMPT:
    NUMBER = "keystead.attempt.number"  # 1 for the first try of the request
    BACKOFF = "keystead.attempt.backoff_s"  # waited before this try
    OUTCOME = "keystead.attempt.outcome"  # ok, http_429, timeout, unreachable, malformed...


# gen_ai.operation.name per endpoint; endpoints that are no model call get no GenAI name.
OPERATION: dict[Endpoint, str] = {
    Endpoint.CHAT: "chat",
    Endpoint.RESPONSES: "chat",
    Endpoint.MESSAGES: "chat",
    Endpoint.EMBEDDINGS: "embeddings",
}

# keystead's provider types -> the conventions' well-known gen_ai.provider.name values.
_PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "azure": "azure.ai.openai",
                   "gemini": "gcp.gemini"}


def provider_name(provider_type: str) -> str:
    """gen_ai.provider.name of a provider type: a well-known value, else keystead's type
    (an OpenAI-compatible server, the mock)."""
    return _PROVIDER_NAMES.get(provider_type, provider_type or "unknown")


def clean(value: str | None, limit: int = 256) -> str | None:
    """`value` when it is printable ASCII of at most `limit` characters, else None (a value
    from a provider or a client does not reach a span unchecked)."""
    if not value or len(value) > limit or not value.isascii() or not value.isprintable():
        return None
    return value
