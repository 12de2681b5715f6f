"""uvicorn's httptools protocol with deadlines for slow clients.

uvicorn closes a keep-alive connection that stays idle (`timeout_keep_alive`), but nothing else:
a client that connects and sends nothing, or trickles its headers a byte every few seconds
(slowloris), or announces a body it never sends, holds a connection and its memory for as long
as it likes. Here every request must finish its headers within `header_timeout_s` of its first
byte (of the connection, for the first request) and its body within `body_timeout_s` of its
headers; otherwise the connection gets a 408 and is closed. (Measured from the end of the read
that left them incomplete: a read is at most a few KB, so that is within a few ms of it.)

A request whose body is cut off gets `keystead.body_timed_out` set in its ASGI scope before the
connection closes, so the data plane records the disconnect that follows as the 408
`request_timeout` it is (pipeline/parse.py), with no timer of its own per request.

The deadlines come from the app (`KeysteadApp.slow_client_limits`), read for each new
connection, so they follow the configuration whether uvicorn runs one process or several.

One write per answer: uvicorn writes a response's head when the app sends
`http.response.start` and its body when the app sends the body, two `write` syscalls for every
whole answer. Each request's cycle here writes through a `_HeadHolder`, which keeps the head
back until the body's first write and sends both in one (a streamed answer's head goes with its
first event). An app that starts an answer and then waits loses nothing: the head goes out at
the end of the loop's current iteration at the latest.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from keystead.pipeline.parse import BODY_TIMED_OUT

__all__ = ["GuardedHttpToolsProtocol", "SlowClientLimits"]

_IDLE, _HEADERS, _BODY = "idle", "headers", "body"
# How much a request line and its headers may weigh before the app sees them: uvicorn and
# httptools keep all of it in memory, with no limit of their own (an unauthenticated client
# sent 40 MiB of headers in a second). nginx's defaults are smaller still.
MAX_TARGET_BYTES = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 256

_REFUSAL = (b"HTTP/1.1 %s\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s")
_TIMEOUT = (b"408 Request Timeout",
            b'{"error":{"message":"The request did not arrive in time.","type":'
            b'"invalid_request_error","param":null,"code":"request_timeout"}}')
_TARGET_TOO_LONG = (b"414 URI Too Long",
                    b'{"error":{"message":"The request line is longer than 16 KiB.","type":'
                    b'"invalid_request_error","param":null,"code":"request_too_large"}}')
_HEADERS_TOO_LARGE = (b"431 Request Header Fields Too Large",
                      b'{"error":{"message":"The request headers are larger than 64 KiB or '
                      b'more than 256.","type":"invalid_request_error","param":null,'
                      b'"code":"request_too_large"}}')


class SlowClientLimits:
    __slots__ = ("body_timeout_s", "header_timeout_s")

    def __init__(self, header_timeout_s: float = 10.0, body_timeout_s: float = 60.0):
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s


class _HeadHolder:
    """The transport as one request's cycle sees it: its first write (the head) is held until
    the next write or the end of this loop iteration, whichever comes first."""

    __slots__ = ("_held", "_transport", "_wrote")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self._wrote = False

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif self._wrote:
            self._transport.write(data)
        else:  # the head
            self._wrote = True
            self._held = data
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():  # (the client may have left meanwhile)
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # anything else the cycle asks of its transport
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Timers only where a client is slow: a request that arrives whole in one read (nearly
    all of them, on a kept-alive connection) arms none. A deadline is armed at the end of a read
    that left a request's headers or body incomplete, and runs from that read."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(self.app, "slow_client_limits", None)
        self._limits = limits if isinstance(limits, SlowClientLimits) else SlowClientLimits()
        self._deadline: asyncio.TimerHandle | None = None
        self._reading = _IDLE  # what part of a request the parser is in
        self._header_bytes = self._header_count = 0
        self._refused = False  # answered already (too large): the parser's callbacks stop

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_s)  # a connection that sends nothing at all

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._arm_if_incomplete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_if_incomplete()  # a pipelined request starts now: its deadline runs

    def _arm_if_incomplete(self) -> None:
        # A request queued behind one in flight (pipelined) waits with reading paused: its
        # deadline starts when it does, not while the one in front takes its time.
        if self._deadline is None and self._reading is not _IDLE and not self.pipeline \
                and not self.transport.is_closing():
            self._arm(self._limits.header_timeout_s if self._reading is _HEADERS
                      else self._limits.body_timeout_s)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = _HEADERS
        self._header_bytes = self._header_count = 0

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._header_bytes += len(url)
        if self._header_bytes > MAX_TARGET_BYTES:
            self._refuse(_TARGET_TOO_LONG)
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        if self._header_bytes > MAX_HEADER_BYTES or self._header_count > MAX_HEADERS:
            self._refuse(_HEADERS_TOO_LARGE)
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._reading = _BODY
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = _HeadHolder(self.transport)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        self._reading = _IDLE
        super().on_message_complete()

    def _refuse(self, answer: tuple[bytes, bytes]) -> None:
        """Answer a request too large to read, and close: its headers never reach the app."""
        self._refused = True
        self._disarm()
        self._reading = _IDLE
        if self.cycle is None or self.cycle.response_complete:
            status, body = answer
            self.transport.write(_REFUSAL % (status, len(body), body))
        self.transport.close()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.scope[BODY_TIMED_OUT] = True  # type: ignore[literal-required]
        if cycle is None or cycle.response_complete or not cycle.response_started:
            status, body = _TIMEOUT
            self.transport.write(_REFUSAL % (status, len(body), body))
        self.transport.close()
