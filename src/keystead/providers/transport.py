"""How bytes reach a provider: one small interface, two implementations.

`HttpTransport` (keystead's own pooled keep-alive HTTP/1.1 client on httptools, h1.py: it
cost a third of aiohttp's CPU per request) talks to real servers.
`ASGITransport` calls an ASGI app in the same process: the built-in mock upstream, and any test
that wants a fake provider without a socket. Foreign exceptions are translated here, at the
boundary, into `UpstreamUnreachable` / `UpstreamTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from multidict import CIMultiDict

from keystead.errors import UpstreamTimeout, UpstreamUnreachable
from keystead.providers.h1 import H1Client

__all__ = ["ASGITransport", "HttpTransport", "Transport", "UpstreamResponse"]


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""

    async def read(self) -> bytes: ...

    def iter_chunks(self) -> AsyncIterator[bytes]: ...

    def abort(self) -> None:
        """Drop the connection now: the provider sees the disconnect and stops generating."""

    def release(self) -> None:
        """Done reading: the connection may serve the next request."""


class Transport(Protocol):
    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                   *, read_timeout: float, what: str) -> UpstreamResponse:
        """Send a request; `what` names the provider in error messages (never a secret)."""

    async def close(self) -> None: ...


class HttpTransport:
    """Real servers, over keystead's own pooled HTTP/1.1 client (providers/h1.py)."""

    def __init__(self, *, connect_timeout: float = 10.0, limit: int = 0,
                 ssl_context: ssl.SSLContext | None = None):
        self._client = H1Client(connect_timeout=connect_timeout, limit=limit,
                                ssl_context=ssl_context)

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                   *, read_timeout: float, what: str) -> UpstreamResponse:
        return await self._client.request(method, url, headers, body,
                                          read_timeout=read_timeout, what=what)

    async def close(self) -> None:
        await self._client.close()


_END = object()


class _ASGIResponse:
    def __init__(self, status: int, headers: CIMultiDict[str], queue: asyncio.Queue[Any],
                 task: asyncio.Task[None], disconnected: asyncio.Event, what: str):
        self.status = status
        self.headers = headers
        self._queue = queue
        self._task = task
        self._disconnected = disconnected
        self._what = what

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_chunks()])

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise UpstreamUnreachable(f"Provider {self._what} closed the connection "
                                          "mid-response.") from None
            if item:
                yield item

    def abort(self) -> None:
        self._disconnected.set()
        self._task.cancel()
        # The cancelled app sends nothing more: wake a reader waiting on the queue, as a dropped
        # socket wakes aiohttp's reader with an error.
        self._queue.put_nowait(ConnectionAbortedError("aborted by the gateway"))

    def release(self) -> None:
        self._disconnected.set()


class ASGITransport:
    """Calls an ASGI app directly; the app sees a normal HTTP/1.1 request from loopback."""

    def __init__(self, app: Any):
        self.app = app
        self._tasks: set[asyncio.Task[None]] = set()

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
                   *, read_timeout: float, what: str) -> UpstreamResponse:
        scheme, _, rest = url.partition("://")
        host, _, path_query = rest.partition("/")
        path, _, query = ("/" + path_query).partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": scheme, "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 0), "server": (host, 80),
        }
        queue: asyncio.Queue[Any] = asyncio.Queue()
        started: asyncio.Future[tuple[int, CIMultiDict[str]]] = \
            asyncio.get_running_loop().create_future()
        disconnected = asyncio.Event()
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body or b"", "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response_headers = CIMultiDict(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in message["headers"])
                started.set_result((message["status"], response_headers))
            elif message["type"] == "http.response.body":
                await queue.put(message.get("body", b""))
                if not message.get("more_body", False):
                    await queue.put(_END)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the app "dropped the connection"
                if not started.done():
                    started.set_exception(UpstreamUnreachable(
                        f"Provider {what} closed the connection without answering."))
                else:
                    await queue.put(exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            status, response_headers = await asyncio.wait_for(asyncio.shield(started),
                                                              read_timeout)
        except TimeoutError:
            task.cancel()
            raise UpstreamTimeout(f"Provider {what} did not answer in time.") from None
        return _ASGIResponse(status, response_headers, queue, task, disconnected, what)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
