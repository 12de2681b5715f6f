"""Anthropic's own API, passed through: `POST /v1/messages` and `/v1/messages/count_tokens`.

Teams on Anthropic's SDKs point them at keystead (base URL without `/v1`, their keystead key
as the API key). Such a request walks the chat request line (identify, address, parse, admit,
guard, route, limit, provider, respond, settle) with Anthropic's bytes; what differs is here:

- the client's headers: its key in `x-api-key` (older SDKs; 2.x sends `Authorization: Bearer`),
  and `anthropic-version` / `anthropic-beta`, passed on to the provider;
- the answer's headers (Anthropic's `request-id` kept) and errors in Anthropic's envelope;
- token estimates when an answer carries no usage, or a stream was cut before its
  `message_delta` (the stream itself is read by `sse.MessagesRelay`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import orjson

from keystead.errors import ModelNotFound, anthropic_error_type
from keystead.pipeline import relay
from keystead.pipeline.context import RequestContext
from keystead.pipeline.sse import MessagesRelay
from keystead.routing.table import Route
from keystead.usage.approx_tokens import text_tokens
from keystead.usage.extract import MessagesUsage
from keystead.usage.prices import TokenUsage

__all__ = ["client_headers", "ensure_envelope", "estimate", "estimate_cut_stream",
           "not_anthropic", "pass_headers"]

log = logging.getLogger("keystead.messages")

# Answer headers passed on. Anthropic's rate-limit headers are not: they describe the gateway's
# provider key, not the caller's limits (keystead's x-ratelimit-* take their place).
_PASSED = (("content-type", b"content-type"), ("retry-after", b"retry-after"),
           ("retry-after-ms", b"retry-after-ms"), ("request-id", b"request-id"),
           ("request-id", b"x-upstream-request-id"))


def client_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, dict[str, str]]:
    """(the `x-api-key` value, the `anthropic-*` headers to pass on). Read only for the
    Messages routes: the OpenAI routes never pay for this second look at the headers."""
    api_key = None
    passed: dict[str, str] = {}
    for name, value in headers:
        if name == b"x-api-key":
            api_key = value
        elif name == b"anthropic-version" or name == b"anthropic-beta":
            text = value.decode("latin-1").strip()
            key = name.decode()
            # Several anthropic-beta lines are one comma-separated list, as Anthropic reads them.
            passed[key] = f"{passed[key]},{text}" if key in passed else text
    return api_key, passed


def pass_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """Anthropic's headers worth passing on (its `request-id`, as such and as ours)."""
    return relay.pass_headers(headers, _PASSED)


def not_anthropic(route: Route, model: str, path: str) -> ModelNotFound:
    """The 404 for a model that no Anthropic provider serves."""
    if route.deployments:
        provider = route.deployments[0].provider
        served = f"is served by provider {provider.name} (type {provider.type})"
    else:
        served = "has no deployment"
    return ModelNotFound(
        f"{path} serves only Anthropic models; {model!r} {served}.",
        param="model",
        hint="Call /v1/chat/completions for it (the OpenAI SDKs), or name a model of an "
             "anthropic provider here.")


def ensure_envelope(body: bytes, status: int, provider: str) -> bytes:
    """A provider error passes through when it is Anthropic-shaped; anything else (an HTML page
    from a proxy) is wrapped in Anthropic's envelope."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and document.get("type") == "error" \
            and isinstance(document.get("error"), dict):
        return body
    return orjson.dumps({"type": "error", "error": {
        "type": anthropic_error_type(status),
        "message": f"Provider {provider} answered HTTP {status} without an Anthropic error "
                   "body.", "code": f"upstream_http_{status}"}})


# --- estimates: only when Anthropic's own counts are missing ---------------------------------


def _loads(raw: bytes | msgspec.Raw | None) -> Any:
    if not raw:
        return None
    try:
        return orjson.loads(memoryview(raw) if isinstance(raw, msgspec.Raw) else raw)
    except orjson.JSONDecodeError:
        return None


def _block_texts(content: Any, parts: list[str]) -> None:
    """The text the model reads or wrote in Anthropic content (a string or blocks)."""
    if isinstance(content, str):
        parts.append(content)
        return
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        for field in ("text", "thinking"):
            if isinstance(block.get(field), str):
                parts.append(block[field])
        if "input" in block:  # tool_use
            parts.append(orjson.dumps(block["input"]).decode())
        if "content" in block:  # tool_result
            _block_texts(block["content"], parts)


def _prompt_tokens(model: str, view: Any) -> int:
    """The request's text (system, messages) counted, + 3 per message, + 3; images and
    documents are not counted (Anthropic's own count arrives with message_start)."""
    parts: list[str] = []
    _block_texts(_loads(getattr(view, "system", None)), parts)
    messages = _loads(getattr(view, "messages", None))
    messages = messages if isinstance(messages, list) else []
    for message in messages:
        if isinstance(message, dict):
            _block_texts(message.get("content"), parts)
    return text_tokens("\n".join(parts)) + 3 * len(messages) + 3


def _streamed_text(payloads: list[bytes]) -> str:
    """The text of `content_block_delta` payloads: text, thinking, tool input fragments."""
    parts: list[str] = []
    for payload in payloads:
        event = _loads(payload)
        delta = event.get("delta") if isinstance(event, dict) else None
        if not isinstance(delta, dict):
            continue
        for field in ("text", "partial_json", "thinking"):
            if isinstance(delta.get(field), str):
                parts.append(delta[field])
    return "".join(parts)


def estimate(model: str, view: Any, response_body: bytes | None,
             streamed: list[bytes] | None, reported: MessagesUsage | None) -> TokenUsage:
    """Usage of a Messages answer counted offline, keeping what Anthropic did report (a cut
    stream's message_start has the exact input and cache counts)."""
    if streamed is not None:
        text = _streamed_text(streamed)
    else:
        document = _loads(response_body)
        parts: list[str] = []
        if isinstance(document, dict):
            _block_texts(document.get("content"), parts)
        text = "".join(parts)
    output = text_tokens(text) if text else 0
    if reported is not None and reported.input_tokens is not None:
        reported_output = reported.output_tokens or 0
        return MessagesUsage(reported.input_tokens, max(output, reported_output),
                             reported.cache_read_input_tokens,
                             reported.cache_creation_input_tokens).tokens()
    return TokenUsage(prompt_tokens=_prompt_tokens(model, view), completion_tokens=output)


async def estimate_cut_stream(ctx: RequestContext, relay: MessagesRelay) -> None:
    """A stream that ended before its message_delta (the client left, the provider broke off,
    an `error` event): what it used so far, counted off the event loop."""
    model = ctx.upstream_model or ctx.model or ""
    try:
        usage = await asyncio.to_thread(estimate, model, ctx.view, None, relay.captured,
                                        relay.counts)
    except Exception:  # counting must never lose the record
        log.exception("token estimate failed for request %s", ctx.request_id)
        return
    ctx.usage = usage
    ctx.usage_estimated = True
