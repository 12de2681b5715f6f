"""ASGI plumbing the mock upstreams share (OpenAI's and Anthropic's): the request body, and a
lifespan that answers so servers started with lifespan="on" do not complain."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["lifespan", "read_body"]

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def read_body(receive: Receive) -> bytes:
    """The whole request body (what arrived, if the client left first)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
