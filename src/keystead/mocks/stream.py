"""How the mock upstream streams: the event-stream response, and OpenAI's chat chunks (the
Responses API's event sequence is in `mocks.responses`).

Split from `mocks.openai_upstream` (routing, auth, whole answers) so each module keeps one job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from keystead.mocks.content import (
    Directives,
    Reply,
    malformed_json,
    new_id,
    stream_deltas,
)

__all__ = ["EventStream", "MockDisconnect", "spend", "stream_chat", "stream_malformed"]

Send = Callable[[dict[str, Any]], Awaitable[None]]


class MockDisconnect(Exception):
    """Raised mid-stream on purpose: the server then drops the connection, like a crashed peer."""


class EventStream:
    """A `text/event-stream` response, with `chunk_delay_ms` between events and `stall_ms`
    between the response start (status and headers) and the first event (the `stall` fault)."""

    def __init__(self, send: Send, delay_ms: float, stall_ms: float = 0):
        self._send, self._delay, self._count = send, delay_ms / 1000, 0
        self._stall = stall_ms / 1000

    async def start(self) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        headers.append((b"x-request-id", new_id("req_").encode()))
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        if self._stall:
            await asyncio.sleep(self._stall)

    async def send(self, data: bytes, event: str | None = None) -> None:
        if self._count and self._delay:
            await asyncio.sleep(self._delay)
        self._count += 1
        frame = b"data: " + data + b"\n\n"
        if event is not None:
            frame = b"event: " + event.encode() + b"\n" + frame
        await self._send({"type": "http.response.body", "body": frame, "more_body": True})

    async def send_json(self, obj: Any, event: str | None = None) -> None:
        await self.send(orjson.dumps(obj), event)

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})


async def stream_chat(
    stream: EventStream,
    base: dict[str, Any],
    replies: list[Reply],
    usage: dict[str, Any] | None,
    directives: Directives,
) -> None:
    """Emit chunks like OpenAI; with include_usage every chunk has `usage: null` until the last."""

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        frame = {"object": "chat.completion.chunk", **base, "choices": [choice]}
        return frame if usage is None else {**frame, "usage": None}

    budget = directives.disconnect_after
    for index, reply in enumerate(replies):
        first, *rest = stream_deltas(reply)
        await stream.send_json(chunk(index, first))
        for delta in rest:
            budget = spend(budget)
            await stream.send_json(chunk(index, delta))
        spend(budget, final=True)
        await stream.send_json(chunk(index, {}, reply.finish_reason))
    if usage is not None:
        await stream.send_json(
            {"object": "chat.completion.chunk", **base, "choices": [], "usage": usage}
        )
    await stream.send(b"[DONE]")
    await stream.end()


async def stream_malformed(stream: EventStream, frame: Any, event: str | None = None) -> None:
    """The `badjson` fault: one `data:` line holding `frame` cut off halfway (not JSON), then
    the end of the stream (no [DONE])."""
    await stream.send(malformed_json(frame), event)
    await stream.end()


def spend(budget: int | None, final: bool = False) -> int | None:
    """Count down `disconnect_after`; at zero, abort the response mid-stream."""
    if budget is None:
        return None
    if budget <= 0:
        raise MockDisconnect("mock disconnect_after directive")
    return budget if final else budget - 1
