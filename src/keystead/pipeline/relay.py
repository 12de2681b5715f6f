"""Respond: send the provider's answer to the client, whole or as a stream, and learn its usage.

Both relays send the provider's bytes. Usage, the served model and time-to-first-byte land on
the request context for `settle`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from keystead.errors import UpstreamError
from keystead.pipeline.context import RequestContext
from keystead.pipeline.sse import SSERelay
from keystead.providers.transport import UpstreamResponse
from keystead.usage.extract import usage_from_body

__all__ = ["ClientGone", "pass_headers", "relay_body", "relay_stream"]

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

# Upstream headers worth passing on. Rate-limit headers are not: they describe the gateway's
# shared provider key, not the client's own limits.
_PASSED = (("content-type", b"content-type"), ("openai-processing-ms", b"openai-processing-ms"),
           ("retry-after", b"retry-after"), ("retry-after-ms", b"retry-after-ms"),
           ("x-request-id", b"x-upstream-request-id"))


class ClientGone(Exception):
    """The client disconnected; the upstream call was cancelled."""


def pass_headers(upstream: UpstreamResponse) -> list[tuple[bytes, bytes]]:
    headers = []
    for name, out in _PASSED:
        value = upstream.headers.get(name)
        if value is not None:
            headers.append((out, value.encode("latin-1")))
    return headers


def upstream_auth_failure(ctx: RequestContext, status: int) -> UpstreamError:
    name = ctx.provider.name if ctx.provider else "?"
    error = UpstreamError(
        f"Provider {name} refused the gateway's own credentials (HTTP {status}).",
        hint="This is not a problem with your key: the platform team must check the provider "
             f"key (`keystead providers test {name}`).",
    )
    error.code = "upstream_auth_failed"
    return error


async def relay_body(ctx: RequestContext, upstream: UpstreamResponse,
                     ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Read the whole upstream answer; usage goes on `ctx`. Returns (status, body, headers)."""
    body = await upstream.read()
    ctx.ttft = ctx.elapsed_ms()
    if upstream.status < 400:
        ctx.usage, served = usage_from_body(body)
        if served:
            ctx.upstream_model = served
    return upstream.status, body, pass_headers(upstream)


async def watch_disconnect(receive: Receive, upstream: UpstreamResponse,
                           gone: asyncio.Event) -> None:
    """Wait for the client to go away; then cut the upstream call so the provider stops."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            upstream.abort()
            return


async def relay_stream(ctx: RequestContext, upstream: UpstreamResponse, send: Send,
                       headers: list[tuple[bytes, bytes]], gone: asyncio.Event,
                       cost_comment: Callable[[], bytes]) -> None:
    """Forward a 200 SSE stream event by event. Raises ClientGone if the client left."""
    relay = SSERelay(drop_usage_chunk=not ctx.client_asked_usage)
    ctx.completion_text = relay.captured
    await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
    try:
        async for chunk in upstream.iter_chunks():
            out = relay.feed(chunk)
            if out:
                if ctx.ttft is None:
                    ctx.ttft = ctx.elapsed_ms()
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if gone.is_set():
                break
    except UpstreamError:
        if not gone.is_set():
            raise
    finally:
        ctx.usage = relay.usage
        if relay.model:
            ctx.upstream_model = relay.model
    if gone.is_set():
        raise ClientGone
    tail = relay.leftover() + cost_comment() + (relay.done_event or b"")
    await send({"type": "http.response.body", "body": tail, "more_body": False})
