"""What the client gets back: the provider's answer (whole or streamed, OpenAI's or Anthropic's
own), an answer the gateway holds (a cache hit, a degraded reply), the provider's error when
every deployment failed, or the gateway's own error.

`Answers` sends; the data plane (`server/dataplane.py`) decides what to send. Every response
carries `x-request-id`, the cost (`x-keystead-cost-usd`, or an SSE comment at the end of a
stream), what served it (`x-keystead-route`, `-deployment`, `-attempts`, `-fallback`) and the
limits' headers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from keystead.cache import CachedResponse
from keystead.errors import GatewayError, RouteUnavailable, render, render_anthropic
from keystead.pipeline import messages
from keystead.pipeline.cache_stage import Lookup, replay
from keystead.pipeline.context import RequestContext
from keystead.pipeline.limits import Limiter
from keystead.pipeline.relay import (
    ClientGone,
    pass_headers,
    relay_body,
    relay_stream,
    upstream_auth_failure,
)
from keystead.pipeline.settle import estimate_usage, price
from keystead.pipeline.sse import MessagesRelay
from keystead.providers.base import Endpoint
from keystead.routing.router import Served, TierFailed
from keystead.usage.prices import TokenUsage

if TYPE_CHECKING:
    from keystead.live import Live
    from keystead.runtime import Runtime

__all__ = ["NATIVE", "Answers", "send_error", "stream_error"]

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Anthropic's own API, passed through: its errors take Anthropic's envelope.
NATIVE = frozenset((Endpoint.MESSAGES, Endpoint.COUNT_TOKENS))
JSON = (b"content-type", b"application/json")
ZERO_COST = (b"x-keystead-cost-usd", b"0")
_ZERO = Decimal(0)


class Answers:
    def __init__(self, runtime: Runtime, live: Live):
        self.rt = runtime
        self.live = live  # the config generation of the data plane that sends

    async def provider_answer(self, ctx: RequestContext, served: Served, send: Send,
                              gone: asyncio.Event, lookup: Lookup | None) -> None:
        """The provider's answer to an OpenAI-format request; stored in the cache when
        `lookup` says so."""
        if ctx.endpoint in NATIVE:
            await self._native_answer(ctx, served, send, gone)
            return
        provider = ctx.provider
        assert provider is not None
        upstream = served.upstream
        if served.chunks is not None:
            ctx.status = 200
            headers = [*pass_headers(upstream.headers), (b"x-request-id", ctx.request_id.encode()),
                       (b"x-keystead-provider", provider.name.encode()),
                       *served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)]
            assembler = self.rt.cache.assembler(ctx.endpoint) if lookup is not None else None
            await relay_stream(ctx, upstream, served.first, served.chunks, send, headers, gone,
                               lambda: self._cost_comment(ctx),
                               assembler.feed if assembler is not None else None)
            if assembler is not None and lookup is not None:
                assembler.end()
                answer = assembler.result()
                if answer is not None:
                    price(ctx, self.live.prices)
                    await self.rt.cache.put(ctx, lookup, answer)
            return
        assert served.body is not None
        status, body, headers = relay_body(ctx, upstream, served.body, served.usage,
                                           served.model)
        if gone.is_set():
            raise ClientGone
        if ctx.usage is None:
            await estimate_usage(ctx, body)
        price(ctx, self.live.prices)
        headers.extend(((b"content-length", str(len(body)).encode()),
                        (b"x-request-id", ctx.request_id.encode()),
                        (b"x-keystead-cost-usd", format(ctx.cost, "f").encode()),
                        (b"x-keystead-provider", provider.name.encode()),
                        *served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)))
        ctx.status = status  # from here on the response has started
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if lookup is not None and status == 200 and ctx.schema_valid is not False:
            await self.rt.cache.put(ctx, lookup, body)

    async def _native_answer(self, ctx: RequestContext, served: Served, send: Send,
                             gone: asyncio.Event) -> None:
        """Anthropic's answer as it came: status, body, events (the usage read on the way, the
        cost in a header, or a trailing SSE comment on a stream)."""
        provider = ctx.provider
        assert provider is not None
        upstream = served.upstream
        own = [(b"x-request-id", ctx.request_id.encode()),
               (b"x-keystead-provider", provider.name.encode()),
               *served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)]
        if served.chunks is not None:
            ctx.status = 200
            relay = MessagesRelay()
            try:
                await relay_stream(ctx, upstream, served.first, served.chunks, send,
                                   [*messages.pass_headers(upstream.headers), *own], gone,
                                   lambda: self._cost_comment(ctx), relay=relay)
            finally:
                if not relay.finished:  # cut short: charge what it used until then
                    await messages.estimate_cut_stream(ctx, relay)
            return
        assert served.body is not None
        body = served.body
        ctx.ttft = ctx.elapsed_ms()
        ctx.usage = served.usage
        if served.model:
            ctx.upstream_model = served.model
        if gone.is_set():
            raise ClientGone
        if ctx.usage is None:
            await estimate_usage(ctx, body)
        price(ctx, self.live.prices)
        headers = [*messages.pass_headers(upstream.headers),
                   (b"content-length", str(len(body)).encode()),
                   (b"x-keystead-cost-usd", format(ctx.cost, "f").encode()), *own]
        ctx.status = upstream.status
        await send({"type": "http.response.start", "status": upstream.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def provider_error(self, ctx: RequestContext, failed: TierFailed, send: Send) -> None:
        """Every deployment failed: the last provider answer, else the last gateway error."""
        if failed.response is None:
            raise failed.error or RouteUnavailable(
                f"No deployment of route {ctx.route or ctx.model!r} can take a request now.",
                hint="Every deployment is cooling down after a 429 or behind an open circuit "
                     "breaker (`keystead routes` shows which); retry shortly.")
        status, upstream_headers, body, deployment = failed.response
        ctx.deployment, ctx.provider = deployment, deployment.provider
        ctx.upstream_model = deployment.model
        if status in (401, 403):
            raise upstream_auth_failure(ctx, status)
        ctx.error_code = f"upstream_http_{status}"
        if ctx.endpoint in NATIVE:  # Anthropic's error, as Anthropic wrote it
            body = messages.ensure_envelope(body, status, deployment.provider.name)
            passed = messages.pass_headers(upstream_headers)
        else:
            body = _ensure_error_envelope(body, status, ctx)
            passed = pass_headers(upstream_headers)
        # The body may have been wrapped in an envelope: it is JSON whatever the provider said.
        headers = [JSON, *(h for h in passed if h[0] != b"content-type"),
                   (b"content-length", str(len(body)).encode()),
                   (b"x-request-id", ctx.request_id.encode()), ZERO_COST,
                   *served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)]
        ctx.status = status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def held_answer(self, ctx: RequestContext, entry: CachedResponse, send: Send, *,
                          cache: str | None = None, degraded: str | None = None) -> None:
        """An answer the gateway holds (a cache hit, or a degraded reply): no provider call,
        nothing spent; a hit records what it saved."""
        ctx.usage = ctx.priced_usage = TokenUsage()
        ctx.cost = _ZERO
        ctx.provider = ctx.deployment = None
        ctx.upstream_model = entry.model or None
        if cache is not None:
            ctx.cache = cache
        ctx.degraded = degraded
        ctx.saved_cost = entry.cost if degraded != "static" else _ZERO
        headers = [(b"x-request-id", ctx.request_id.encode()), ZERO_COST,
                   *served_headers(ctx), *self.rt.limiter.headers(ctx.ticket)]
        if cache is not None:
            headers += [(b"x-keystead-cache", cache.encode()),
                        (b"x-keystead-cache-age", str(entry.age_s()).encode())]
        if degraded is not None:
            headers.append((b"x-keystead-degraded", degraded.encode()))
        ctx.status = 200
        if ctx.stream:
            events = replay(entry, ctx.client_asked_usage)
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-cache"), *headers]})
            await send({"type": "http.response.body", "body": b"".join(events),
                        "more_body": False})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            JSON, (b"content-length", str(len(entry.body)).encode()), *headers]})
        await send({"type": "http.response.body", "body": entry.body})

    def _cost_comment(self, ctx: RequestContext) -> bytes:
        # Headers left before the stream's usage was known: the cost travels as an SSE comment,
        # which every SSE client ignores and a curious one can read.
        if ctx.usage is None:
            return b""
        price(ctx, self.live.prices)
        return b": x-keystead-cost-usd " + format(ctx.cost, "f").encode() + b"\n\n"


def served_headers(ctx: RequestContext) -> list[tuple[bytes, bytes]]:
    headers = []
    if ctx.route is not None:
        headers.append((b"x-keystead-route", ctx.route.encode()))
    if ctx.deployment is not None:
        headers.append((b"x-keystead-deployment", ctx.deployment.id.encode()))
    if ctx.attempts > 1:
        headers.append((b"x-keystead-attempts", str(ctx.attempts).encode()))
    if ctx.fallback:
        headers.append((b"x-keystead-fallback", b"true"))
    if ctx.schema_valid is False:
        headers.append((b"x-keystead-schema-valid", b"false"))
    return headers


def _ensure_error_envelope(body: bytes, status: int, ctx: RequestContext) -> bytes:
    """Upstream errors pass through when they are OpenAI-shaped; anything else is wrapped."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), dict):
        return body
    name = ctx.provider.name if ctx.provider else "?"
    return orjson.dumps({"error": {
        "message": f"Provider {name} answered HTTP {status} without an OpenAI error body.",
        "type": "upstream_error", "param": None, "code": f"upstream_http_{status}"}})


async def send_error(send: Send, ctx: RequestContext, error: GatewayError) -> None:
    body = render_anthropic(error, ctx.request_id) if ctx.endpoint in NATIVE else render(error)
    headers = [JSON, (b"content-length", str(len(body)).encode()),
               (b"x-request-id", ctx.request_id.encode()), ZERO_COST, *error.headers()]
    if ctx.ticket is not None:  # admitted, then failed: the limits still speak
        headers += Limiter.headers(ctx.ticket)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def stream_error(send: Send, error: GatewayError, native: bool = False) -> None:
    # The status line is gone already; an error event is what OpenAI sends mid-stream, and the
    # SDKs raise it as an APIError. Anthropic's streams send an `error` event (its SDKs raise
    # it as an APIStatusError).
    event = b"event: error\ndata: " + render_anthropic(error) + b"\n\n" if native \
        else b"data: " + render(error) + b"\n\n"
    with contextlib.suppress(Exception):
        await send({"type": "http.response.body", "body": event, "more_body": False})
