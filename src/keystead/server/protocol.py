"""uvicorn's httptools protocol with deadlines for slow clients.

uvicorn closes a keep-alive connection that stays idle (`timeout_keep_alive`), but nothing else:
a client that connects and sends nothing, or trickles its headers a byte every few seconds
(slowloris), or announces a body it never sends, holds a connection and its memory for as long
as it likes. Here every request must finish its headers within `header_timeout_s` of its first
byte (of the connection, for the first request) and its body within `body_timeout_s` of its
headers; otherwise the connection gets a 408 and is closed.

The data plane reads its bodies under the same `body_timeout_s` and answers a late one with a
proper 408 `request_timeout` and a ledger row (pipeline/parse.py); the deadline here is one
second later, the wall for every other path (the admin API, unknown routes).

The deadlines come from the app (`KeysteadApp.slow_client_limits`), read for each new
connection, so they follow the configuration whether uvicorn runs one process or several.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GuardedHttpToolsProtocol", "SlowClientLimits"]

_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s")
_BODY = (b'{"error":{"message":"The request did not arrive in time.","type":'
         b'"invalid_request_error","param":null,"code":"request_timeout"}}')
# The data plane's own body deadline answers first; this one is the wall behind it.
_BODY_GRACE_S = 1.0


class SlowClientLimits:
    __slots__ = ("body_timeout_s", "header_timeout_s")

    def __init__(self, header_timeout_s: float = 10.0, body_timeout_s: float = 60.0):
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(self.app, "slow_client_limits", None)
        self._limits = limits if isinstance(limits, SlowClientLimits) else SlowClientLimits()
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._limits.header_timeout_s)  # the first request's line and headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a later request on a kept-alive connection
            self._arm(self._limits.header_timeout_s)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        self._arm(self._limits.body_timeout_s + _BODY_GRACE_S)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

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
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(_TIMEOUT_408 % (len(_BODY), _BODY))
        self.transport.close()
