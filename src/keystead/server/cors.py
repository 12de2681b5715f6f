"""CORS for browser apps calling /v1 with short-lived tokens (`server.cors_origins`): the
preflight answer, and the headers added to the answers of allowed origins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["preflight", "with_cors"]

Send = Callable[[dict[str, Any]], Awaitable[None]]

# What a browser may read of an answer: keystead's own headers and OpenAI's rate-limit ones.
_EXPOSED = (b"x-request-id, x-keystead-cost-usd, x-keystead-provider, retry-after, "
            b"retry-after-ms, x-keystead-route, x-keystead-deployment, x-keystead-attempts, "
            b"x-keystead-fallback, x-keystead-cache, x-keystead-cache-age, "
            b"x-keystead-degraded, x-keystead-schema-valid, "
            b"x-ratelimit-limit-requests, x-ratelimit-remaining-requests, "
            b"x-ratelimit-reset-requests, x-ratelimit-limit-tokens, "
            b"x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens")


async def preflight(send: Send, origin: bytes) -> None:
    """The answer to a browser's OPTIONS preflight from an allowed origin."""
    await send({"type": "http.response.start", "status": 204, "headers": [
        (b"access-control-allow-origin", origin), (b"vary", b"origin"),
        (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
        (b"access-control-allow-headers",
         b"authorization, content-type, x-request-id, x-keystead-feature, openai-organization, "
         b"x-api-key, anthropic-version, anthropic-beta, "
         b"anthropic-dangerous-direct-browser-access, "
         b"openai-project, x-stainless-arch, x-stainless-lang, x-stainless-os, "
         b"x-stainless-package-version, x-stainless-runtime, x-stainless-runtime-version, "
         b"x-stainless-retry-count, x-stainless-timeout, x-stainless-async"),
        (b"access-control-max-age", b"600")]})
    await send({"type": "http.response.body", "body": b""})


def with_cors(send: Send, origin: bytes) -> Send:
    """`send`, adding the CORS answer to the response start (only for allowed origins)."""
    async def cors_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message["headers"], (b"access-control-allow-origin", origin),
                                  (b"vary", b"origin"),
                                  (b"access-control-expose-headers", _EXPOSED)]
        await send(message)
    return cors_send
