"""ASGI plumbing the mock upstreams share (OpenAI's and Anthropic's): the request body, a
lifespan that answers so servers started with lifespan="on" do not complain, and serving one
over HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from keystead.mocks.stream import MockDisconnect

__all__ = ["ReceivedRequest", "lifespan", "read_body", "received", "serve_app"]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """A request a mock upstream was sent, as tests read it back."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lowercased names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def received(scope: dict[str, Any], body: bytes) -> ReceivedRequest:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return ReceivedRequest(scope["method"], scope["path"],
                           scope.get("query_string", b"").decode("latin-1"), headers, body)

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


class _HideRequestedDisconnects(logging.Filter):
    """uvicorn logs app exceptions with a traceback; a `disconnect_after` abort is no error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], MockDisconnect))


_HIDE_DISCONNECTS = _HideRequestedDisconnects()


async def serve_app(app: Any, host: str, port: int, sock: socket.socket | None = None) -> None:
    """Serve a mock over HTTP until cancelled (or interrupted, when in the main thread); on
    `sock` when given (bound and listening already), else on host:port."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    logging.getLogger("uvicorn.error").addFilter(_HIDE_DISCONNECTS)  # after Config set up logging
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=[sock] if sock is not None else None))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        # Embedded in a test or the demo: shut down properly so sockets get closed.
        server.should_exit = True
        await task
        raise
