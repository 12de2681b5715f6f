"""Respond: send the provider's answer to the client, whole or as a stream, and learn its usage.

Both relays send the provider's bytes. Usage, the served model and time-to-first-byte land on
the request context for `settle`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from keystead.errors import UpstreamError
from keystead.pipeline.context import RequestContext
from keystead.pipeline.sse import SSERelay
from keystead.providers.transport import UpstreamResponse
from keystead.usage.prices import TokenUsage

__all__ = ["ClientGone", "ClientWatch", "pass_headers", "relay_body", "relay_stream",
           "upstream_auth_failure"]

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

# Upstream headers worth passing on. Rate-limit headers are not: they describe the gateway's
# shared provider key, not the client's own limits.
_PASSED = (("content-type", b"content-type"), ("openai-processing-ms", b"openai-processing-ms"),
           ("retry-after", b"retry-after"), ("retry-after-ms", b"retry-after-ms"),
           ("x-request-id", b"x-upstream-request-id"))


class ClientGone(Exception):
    """The client disconnected; the upstream call was cancelled."""


def pass_headers(headers: Mapping[str, str],
                 passed: Sequence[tuple[str, bytes]] = _PASSED) -> list[tuple[bytes, bytes]]:
    """The provider's headers worth passing on (`passed`: its name -> ours), as ASGI pairs."""
    found = []
    for name, out in passed:
        value = headers.get(name)
        if value is not None:
            found.append((out, value.encode("latin-1")))
    return found


def upstream_auth_failure(ctx: RequestContext, status: int) -> UpstreamError:
    name = ctx.provider.name if ctx.provider else "?"
    error = UpstreamError(
        f"Provider {name} refused the gateway's own credentials (HTTP {status}).",
        hint="This is not a problem with your key: the platform team must check the provider "
             f"key (`keystead providers test {name}`).",
    )
    error.code = "upstream_auth_failed"
    return error


def relay_body(ctx: RequestContext, upstream: UpstreamResponse, body: bytes,
               usage: TokenUsage | None, model: str | None,
               ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The whole upstream answer, read (and its usage and model found) by the router; they go
    on `ctx`. Returns (status, body, headers)."""
    ctx.ttft = ctx.elapsed_ms()
    ctx.usage = usage
    if model:
        ctx.upstream_model = model
    return upstream.status, body, pass_headers(upstream.headers)


class ClientWatch:
    """Notices the client going away and stops the upstream work under way (P20).

    Before the provider has answered, the request task itself is cancelled (so a long
    non-streamed generation is not waited for); after, the upstream connection is cut.
    """

    __slots__ = ("_task", "_upstream", "_watcher", "gone")

    def __init__(self, receive: Receive):
        self.gone = asyncio.Event()
        self._task = asyncio.current_task()
        self._upstream: UpstreamResponse | None = None
        self._watcher = asyncio.get_running_loop().create_task(self._watch(receive))

    def attach(self, upstream: UpstreamResponse) -> None:
        self._upstream = upstream

    def was_cancelled_by_us(self) -> bool:
        """After a CancelledError: True if it was this watch's doing (then it is absorbed)."""
        if self.gone.is_set() and self._upstream is None and self._task is not None:
            self._task.uncancel()
            return True
        return False

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone.set()
                if self._upstream is not None:
                    self._upstream.abort()
                elif self._task is not None:
                    self._task.cancel()
                return

    async def close(self) -> None:
        self._watcher.cancel()
        # A receive() that failed (a server quirk on a dead connection) must not replace the
        # request's own outcome; the watch only ever informs.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._watcher


async def relay_stream(ctx: RequestContext, upstream: UpstreamResponse, first: bytes,
                       chunks: AsyncIterator[bytes], send: Send,
                       headers: list[tuple[bytes, bytes]], gone: asyncio.Event,
                       cost_comment: Callable[[], bytes],
                       tap: Callable[[bytes], None] | None = None,
                       relay: SSERelay | None = None) -> None:
    """Forward a 200 SSE stream event by event: `first` (which the router read before choosing
    this answer), then the rest of `chunks`; `tap` sees every upstream chunk (the cache
    assembles the answer from them). `relay` reads the events (default: an OpenAI stream's
    `SSERelay`). Raises ClientGone if the client left."""
    if relay is None:
        relay = SSERelay(drop_usage_chunk=not ctx.client_asked_usage)
    ctx.completion_text = relay.captured
    await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
    feed, next_chunk = relay.feed, chunks.__anext__
    try:
        # `first` (read by the router) then the rest; no generator around `chunks`: this loop
        # runs once per event.
        chunk = first
        while True:
            if tap is not None:
                tap(chunk)
            out = feed(chunk)
            if out:
                if ctx.ttft is None:
                    ctx.ttft = ctx.elapsed_ms()
                await send({"type": "http.response.body", "body": out, "more_body": True})
            if gone.is_set():
                break
            try:
                chunk = await next_chunk()
            except StopAsyncIteration:
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
