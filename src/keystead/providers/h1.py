"""A small pooled HTTP/1.1 client for the upstream: asyncio Protocols and httptools' parser.

Why not aiohttp: per proxied request aiohttp's client builds a ClientRequest, a yarl URL, a
timer handle per read, a writer and a payload object, and cost about 30 % of the gateway's CPU
(docs/performance.md, "Transport"). This client does the few things a gateway needs and nothing
else: the request head built as one string and written with the body in one `write`, the
response parsed in C by httptools (already a dependency, uvicorn's parser), its body handed on
as it arrives.

What it does, and does not:

- Keep-alive: one request at a time per connection; idle connections are kept per origin
  (scheme, host, port) and reused newest first, and dropped after `keepalive_timeout` idle or
  as soon as the server closes them. `limit` caps open connections over all origins (0: none);
  a request waits for a free one.
- Bodies: Content-Length, chunked, and read-until-close answers. The body is handed on as it
  arrives (a stream keeps its time to first byte); reading pauses while more than
  `_HIGH_WATER` bytes wait for a slow consumer. The answer to a HEAD ends with its head (its
  connection is then closed: httptools cannot be told to expect no body).
- No automatic decompression (no Accept-Encoding is sent, a compressed body passes through as
  it is), no redirects followed, no cookies, no User-Agent.
- Errors: a connection refused, reset or closed mid-answer, an answer httptools cannot
  parse, or more than 64 KiB in a row that are no body (an endless head, 1xx answers or
  trailers), is `UpstreamUnreachable`; no byte for `read_timeout` seconds while an answer is
  awaited, or no connection in `connect_timeout`, is `UpstreamTimeout`.
- TLS for https: the default context (certificates and host name checked, SNI sent) or the
  one given.
- The retry rule for a stale pooled connection (the server closed it while it sat idle, and the
  close crossed our request on the wire): a request sent on a *reused* connection that fails
  before any byte of the answer arrived is sent once more on a fresh connection, but only for
  the idempotent methods of RFC 9110 9.2.2 (GET, HEAD, OPTIONS, TRACE, PUT, DELETE), the same
  rule as aiohttp's. A POST is never sent twice (the server may have received it and billed
  it); it fails as `UpstreamUnreachable`. A connection the server had already closed before we
  picked it (its close seen by the event loop) is never used, for any method.
- `abort()` closes the connection; `release()` returns it to the pool only when the whole
  answer was received (otherwise it is closed). An answer received whole goes back by itself,
  as aiohttp's does, so a caller that reads to the end and forgets `release()` leaks nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import quote

import httptools
from multidict import CIMultiDict

from keystead.errors import UpstreamTimeout, UpstreamUnreachable

__all__ = ["H1Client", "H1Response"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
_HIGH_WATER = 256 * 1024  # bytes buffered for a slow consumer before reading pauses
_LOW_WATER = 64 * 1024
# Bytes in a row that carry no body (a head, 1xx answers, chunk trailers): httptools holds a
# header line whole, so without a cap an endless one would fill the memory.
_MAX_HEAD = 64 * 1024
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"  # kept as is when a target is percent-encoded


def _unreachable(what: str, why: str) -> UpstreamUnreachable:
    return UpstreamUnreachable(
        f"Provider {what} is unreachable ({why}).",
        hint="Check that it is running and that its base_url is right "
             "(`keystead providers test NAME`).")


def _timed_out(what: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"Provider {what} did not answer in time.",
                           hint="Retry later, or raise server.upstream_timeout_s.")


class _Origin:
    __slots__ = ("host", "host_header", "idle", "port", "tls")

    def __init__(self, scheme: str, netloc: str) -> None:
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported URL scheme {scheme!r}")
        if "@" in netloc:
            raise ValueError("credentials in a provider URL are not supported")
        self.tls = scheme == "https"
        host, port = netloc, 443 if self.tls else 80
        if netloc.startswith("["):  # [v6]:port
            end = netloc.index("]")
            host = netloc[1:end]
            if netloc[end + 1:end + 2] == ":" and netloc[end + 2:]:
                port = int(netloc[end + 2:])
        elif ":" in netloc:
            host, _, port_text = netloc.rpartition(":")
            if port_text:  # (an empty one is the default, as in yarl and urllib)
                port = int(port_text)
        if not host:
            raise ValueError(f"no host in {netloc!r}")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        if not host.isascii():  # an internationalised name: its ASCII (IDNA) form on the wire
            host = host.encode("idna").decode("ascii")  # UnicodeError is a ValueError
            netloc = host if port == (443 if self.tls else 80) else f"{host}:{port}"
        self.host, self.port, self.host_header = host, port, netloc
        self.idle: deque[_Connection] = deque()


class _Connection(asyncio.Protocol):
    """One socket; the response being read on it, if any."""

    def __init__(self, client: H1Client, origin: _Origin) -> None:
        self.client = client
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: H1Response | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self.paused = False
        self.interim = False  # parsing a 1xx answer, which is skipped
        self.counted = True  # in the client's count of open connections
        self.body_seen = False  # a byte of body in the data being fed
        self.head_bytes = 0  # bytes received since the last byte of body (see _MAX_HEAD)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection is not usable
            self.close()
            return
        response._received = True
        response._last_data = self.client._loop.time()
        self.body_seen = False
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # (101: never asked)
            response._fail(_unreachable(response._what, "malformed answer"))
            self.close()
            return
        if self.body_seen:
            self.head_bytes = 0
        else:
            self.head_bytes += len(data)
            if self.head_bytes > _MAX_HEAD and self.response is not None:
                response._fail(_unreachable(response._what, "answer head too large"))
                self.close()

    def eof_received(self) -> bool | None:
        response = self.response
        if response is not None and response._headers_done and not response._done \
                and response._until_close:
            response._finish()  # a body delimited by the close: this was its end
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._forget(self)
        response = self.response
        if response is not None and not response._done:
            why = type(exc).__name__ if exc is not None else "connection closed mid-answer"
            response._fail(_unreachable(response._what, why))
        self.response = None

    def pause_writing(self) -> None:  # a request body larger than the socket's buffer
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.response is None:  # a second answer to one request: not a usable connection
            self.close()
            raise ConnectionError("unsolicited answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.response is not None:
            self.response._raw_headers.append((name.decode("latin-1"),
                                                value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        response = self.response
        if response is None:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue, 103 Early Hints: the real answer follows
            self.interim = True
            response._raw_headers.clear()
            return
        response._on_headers(status)
        if response.bodiless:
            # httptools cannot be told that no body follows: the answer ends here and the
            # connection goes, as the parser would wait for a body of content-length bytes
            response._until_close = True
            response._finish()

    def on_body(self, body: bytes) -> None:
        response = self.response
        if response is None:
            return
        self.body_seen = True
        response._feed(body)
        if response._size > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.response is not None:
            self.response._finish()

    # ours

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()


class H1Response:
    """One answer; implements keystead.providers.transport.UpstreamResponse."""

    __slots__ = ("_chunks", "_conn", "_done", "_error", "_headers_done", "_keep_alive",
                 "_last_data", "_raw_headers", "_read_timeout", "_received", "_size", "_timer",
                 "_until_close", "_waiter", "_what", "bodiless", "headers", "status")

    def __init__(self, conn: _Connection, read_timeout: float, what: str) -> None:
        self._conn: _Connection | None = conn
        self._what = what
        self._read_timeout = read_timeout
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()
        self._raw_headers: list[tuple[str, str]] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._headers_done = self._done = self._received = self._until_close = False
        self._keep_alive = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.bodiless = False  # the answer to a HEAD

    # fed by the connection

    def _on_headers(self, status: int) -> None:
        self.status = status
        self.headers = CIMultiDict(self._raw_headers)
        self._headers_done = True
        # A body with neither length nor chunking runs to the close (RFC 9112 6.3); httptools
        # cannot be told of the end of input, so the connection's EOF finishes it.
        self._until_close = status >= 200 and status not in (204, 304) \
            and "content-length" not in self.headers \
            and "chunked" not in self.headers.get("transfer-encoding", "").lower()
        self._wake()

    def _feed(self, body: bytes) -> None:
        self._chunks.append(body)
        self._size += len(body)
        if self._waiter is not None:
            self._wake()

    def _finish(self) -> None:
        conn = self._conn
        self._done = True
        self._disarm()
        if conn is not None:
            self._keep_alive = conn.parser.should_keep_alive() and not self._until_close
            self._conn = None  # whole: the connection is free for the next request
            conn.response = None
            conn.client._give_back(conn, self._keep_alive)
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self._done:
            return
        self._error = error
        self._done = True
        self._disarm()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.response = None
            conn.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # the read timeout: no byte for `read_timeout` seconds while the answer is awaited

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self._last_data = loop.time()
        self._timer = loop.call_at(self._last_data + self._read_timeout, self._check_timeout)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_timeout(self) -> None:
        self._timer = None
        if self._done:
            return
        conn = self._conn
        loop = asyncio.get_running_loop()
        due = self._last_data + self._read_timeout
        if (conn is not None and conn.paused) or loop.time() < due:
            # bytes came meanwhile, or the consumer is behind (we stopped reading): not the
            # upstream's silence
            if conn is not None and conn.paused:
                due = loop.time() + self._read_timeout
            self._timer = loop.call_at(due, self._check_timeout)
            return
        self._fail(_timed_out(self._what))

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            await waiter
        except asyncio.CancelledError:
            self._waiter = None
            raise

    # UpstreamResponse

    async def read(self) -> bytes:
        parts: list[bytes] = []
        try:
            while True:
                # taken as they come, so the buffer never reaches the mark that pauses reading
                if self._chunks:
                    parts += self._chunks
                    self._chunks = []
                    self._size = 0
                    conn = self._conn
                    if conn is not None and conn.paused:
                        conn.resume()
                if self._done:
                    break
                await self._wait()
        except asyncio.CancelledError:
            self.abort()
            raise
        if self._error is not None:
            raise self._error
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        while True:
            if self._chunks:
                chunks, self._chunks = self._chunks, []
                self._size = 0
                conn = self._conn
                if conn is not None and conn.paused:
                    conn.resume()
                yield chunks[0] if len(chunks) == 1 else b"".join(chunks)
            elif self._done:
                if self._error is not None:
                    raise self._error
                return
            else:
                await self._wait()

    def abort(self) -> None:
        # A reader still iterating hears UpstreamUnreachable, as from a dropped connection.
        if not self._done:
            self._fail(_unreachable(self._what, "connection closed by the gateway"))

    def release(self) -> None:
        # Received whole, the connection went back to the pool already; otherwise it cannot
        # serve another request before this answer's rest is read: it goes.
        if not self._done:
            self._fail(_unreachable(self._what, "released before the answer was read"))


class H1Client:
    """The pool of connections, and `request`."""

    def __init__(self, *, connect_timeout: float = 10.0, limit: int = 0,
                 keepalive_timeout: float = 30.0, ssl_context: ssl.SSLContext | None = None):
        self._connect_timeout = connect_timeout
        self._limit = limit
        self._keepalive = keepalive_timeout
        self._ssl = ssl_context
        self._origins: dict[tuple[str, str], _Origin] = {}
        self._open = 0  # connections open or opening, over all origins
        self._conns: set[_Connection] = set()  # connected ones
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._closed = False

    async def request(self, method: str, url: str, headers: dict[str, str],
                      body: bytes | None, *, read_timeout: float, what: str) -> H1Response:
        try:
            origin, target = self._split(url)
        except ValueError:  # as aiohttp's InvalidURL: this provider's failure, not a crash
            raise _unreachable(what, "invalid URL") from None
        payload = self._encode(method, origin, target, headers, body)
        conn = await self._acquire(origin, what)
        head = method == "HEAD"
        response = await self._exchange(conn, payload, read_timeout, what, head=head,
                                        may_retry=conn.reused and method in IDEMPOTENT_METHODS)
        if response is None:
            # A stale pooled connection, nothing of the answer seen: once more on a fresh one.
            conn = await self._acquire(origin, what, fresh=True)
            response = await self._exchange(conn, payload, read_timeout, what, head=head,
                                            may_retry=False)
            assert response is not None
        return response

    async def close(self) -> None:
        self._closed = True
        for origin in self._origins.values():
            origin.idle.clear()
        for conn in list(self._conns):
            if conn.response is not None:
                conn.response._fail(_unreachable(conn.response._what,
                                                 "the gateway is shutting down"))
            conn.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    # the request

    def _split(self, url: str) -> tuple[_Origin, str]:
        start = url.find("://")
        if start < 0:
            raise ValueError(f"not an absolute URL: {url!r}")
        end = start + 3
        length = len(url)
        while end < length and url[end] not in "/?#":
            end += 1
        key = (url[:start].lower(), url[start + 3:end])
        origin = self._origins.get(key)
        if origin is None:
            origin = self._origins[key] = _Origin(*key)
        target = url[end:].partition("#")[0]
        if not target or target[0] != "/":
            target = "/" + target
        if not (target.isascii() and target.isprintable()) or " " in target:
            target = quote(target, safe=_TARGET_SAFE)
        return origin, target

    @staticmethod
    def _encode(method: str, origin: _Origin, target: str, headers: dict[str, str],
                body: bytes | None) -> bytes:
        host = origin.host_header
        lines = [f"{method} {target} HTTP/1.1\r\n"]
        for name, value in headers.items():
            lowered = name.lower()
            if lowered in _OWN_HEADERS:
                if lowered == "host":
                    host = value
                continue
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"host: {host}\r\n")
        if body is not None:
            lines.append(f"content-length: {len(body)}\r\n\r\n")
        elif method in _BODY_METHODS:
            lines.append("content-length: 0\r\n\r\n")
        else:
            lines.append("\r\n")
        head = "".join(lines)
        # A CR or LF inside a name or value would start a header (or a request) of its own.
        if head.count("\n") != len(lines) + (body is not None or method in _BODY_METHODS) \
                or head.count("\r") != head.count("\n"):
            raise ValueError("a header name or value contains a line break")
        data = head.encode("utf-8")
        return data + body if body else data

    async def _exchange(self, conn: _Connection, payload: bytes, read_timeout: float,
                        what: str, *, head: bool, may_retry: bool) -> H1Response | None:
        """The answer once its head is in; None: a stale connection to try again."""
        response = H1Response(conn, read_timeout, what)
        response.bodiless = head
        conn.response = response
        conn.head_bytes = 0
        assert conn.transport is not None
        conn.transport.write(payload)  # head and body in one write
        response._arm(self._loop)
        try:
            while not response._headers_done:
                if response._done:
                    error = response._error
                    assert error is not None
                    if may_retry and not response._received \
                            and isinstance(error, UpstreamUnreachable):
                        return None
                    raise error
                await response._wait()
        except asyncio.CancelledError:
            response.abort()
            raise
        return response

    # the pool

    async def _acquire(self, origin: _Origin, what: str, *, fresh: bool = False) -> _Connection:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if self._closed:
            raise _unreachable(what, "the gateway is shutting down")
        while True:
            if not fresh:
                idle = origin.idle
                now = self._loop.time()
                while idle:
                    conn = idle.pop()
                    transport = conn.transport
                    if conn.closed or transport is None or transport.is_closing() \
                            or now - conn.idle_since > self._keepalive:
                        conn.close()
                        continue
                    conn.reused = True
                    return conn
            if self._limit <= 0 or self._open < self._limit:
                return await self._connect(origin, what)
            self._drop_one_idle()
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken, then cancelled before it ran: the next one goes
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self, origin: _Origin, what: str) -> _Connection:
        self._open += 1
        conn = _Connection(self, origin)
        tls: ssl.SSLContext | None = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._loop.create_connection(
                    lambda: conn, origin.host, origin.port, ssl=tls,
                    server_hostname=origin.host if tls is not None else None)
        except TimeoutError:
            self._uncount(conn)
            raise UpstreamTimeout(f"Provider {what} did not answer in time (no connection "
                                  f"in {self._connect_timeout:g} s).",
                                  hint="Check that it is running and reachable.") from None
        except (OSError, ValueError) as exc:  # refused, no route, DNS, TLS (SSLError is one)
            self._uncount(conn)
            raise _unreachable(what, type(exc).__name__) from None
        except BaseException:
            self._uncount(conn)
            raise
        if self._closed:
            self._uncount(conn)
            raise _unreachable(what, "the gateway is shutting down")
        self._conns.add(conn)
        return conn

    def _uncount(self, conn: _Connection) -> None:
        conn.close()
        if conn.counted:
            conn.counted = False
            self._open -= 1
            self._wake_one()

    def _give_back(self, conn: _Connection, keep_alive: bool) -> None:
        conn.resume()
        if not keep_alive or conn.closed or self._closed:
            conn.close()  # connection_lost forgets it
            return
        conn.idle_since = self._loop.time()
        idle = conn.origin.idle
        idle.append(conn)
        # the oldest idle connection past its time goes now, not when next looked at
        if self._loop.time() - idle[0].idle_since > self._keepalive:
            idle.popleft().close()
        self._wake_one()

    def _forget(self, conn: _Connection) -> None:
        """connection_lost: it no longer counts, and is no longer idle."""
        self._conns.discard(conn)
        with contextlib.suppress(ValueError):
            conn.origin.idle.remove(conn)
        self._uncount(conn)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _drop_one_idle(self) -> None:
        """At the limit with nothing idle for this origin: close the longest-idle connection
        of another origin to make room."""
        oldest: _Connection | None = None
        for origin in self._origins.values():
            if origin.idle and (oldest is None or origin.idle[0].idle_since < oldest.idle_since):
                oldest = origin.idle[0]
        if oldest is not None:  # it counts until connection_lost, which wakes a waiter
            oldest.origin.idle.popleft()
            oldest.close()
