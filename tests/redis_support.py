"""Test helpers for the real Redis (never a mock): counters on a private key prefix, a raw client,
and a TCP proxy that tests can take down and bring back to play a Redis outage.

The Redis is KEYSTEAD_TEST_REDIS_URL (default redis://127.0.0.1:6379/0). CI always has one, so a
missing Redis fails the tests that need it, unless KEYSTEAD_TEST_SKIP_REDIS=1 says to skip them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import redis.asyncio as aioredis

from keystead.state.redis_counters import RedisCounters

REDIS_URL = os.environ.get("KEYSTEAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
_checked: str | None = None  # "up", or why Redis is not usable


def require_redis() -> None:
    """Skip (KEYSTEAD_TEST_SKIP_REDIS=1) or fail with a clear message when Redis is down."""
    global _checked
    if _checked is None:
        try:
            with redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1.0,
                                      socket_timeout=1.0) as client:
                client.ping()
            _checked = "up"
        except redis.RedisError as exc:
            _checked = f"{type(exc).__name__}: {exc}"
    if _checked == "up":
        return
    if os.environ.get("KEYSTEAD_TEST_SKIP_REDIS") == "1":
        pytest.skip(f"Redis at {REDIS_URL} is not reachable (KEYSTEAD_TEST_SKIP_REDIS=1)")
    pytest.fail(f"These tests need a Redis at {REDIS_URL} and it is not reachable ({_checked}). "
                "Start one (e.g. `redis-server --save '' --port 6379`), point "
                "KEYSTEAD_TEST_REDIS_URL at yours, or set KEYSTEAD_TEST_SKIP_REDIS=1 to skip them.",
                pytrace=False)


def fresh_prefix() -> str:
    return f"keystead-test:{uuid.uuid4().hex[:12]}:"


@asynccontextmanager
async def raw_redis(url: str = REDIS_URL) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url, socket_timeout=5.0)
    try:
        yield client
    finally:
        await client.aclose(close_connection_pool=True)


async def delete_prefix(prefix: str) -> None:
    escaped = "".join("\\" + c if c in "\\*?[]" else c for c in prefix)
    async with raw_redis() as client:
        keys = [key async for key in client.scan_iter(match=escaped + "*", count=1000)]
        if keys:
            await client.delete(*keys)


@asynccontextmanager
async def redis_counters(clock: Callable[[], float] | None = None, *, prefix: str | None = None,
                         url: str = REDIS_URL, cleanup: bool = True, **options: float
                         ) -> AsyncIterator[RedisCounters]:
    """A RedisCounters on `prefix` (a fresh random one by default); its keys are deleted after."""
    prefix = prefix or fresh_prefix()
    counters = RedisCounters(url, prefix, clock=clock, **options)
    try:
        yield counters
    finally:
        await counters.close()
        if cleanup:
            await delete_prefix(prefix)


class RedisProxy:
    """A TCP proxy in front of the test Redis: `stop()` is Redis going away (connections cut,
    new ones refused), `start()` is Redis coming back on the same address, `freeze()` a peer
    that vanished without a word (open connections carry nothing, new ones work);
    `freeze(replies=True)` a Redis that still runs the commands of open connections but whose
    answers never arrive (a command applied, and its caller timing out)."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        """`target`: another TCP service to stand in front of (PostgreSQL), not Redis."""
        parsed = urlsplit(REDIS_URL)
        self._target = target or (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()  # the ends that carry answers back
        self._frozen: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        parts = urlsplit(REDIS_URL)
        return urlunsplit((parts.scheme, f"127.0.0.1:{self.port}", parts.path, "", ""))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.cut()  # before wait_closed: since 3.12 it waits for open connections
        if server is not None:
            await server.wait_closed()

    async def cut(self) -> None:
        """Drop every open connection (the listener stays)."""
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def freeze(self, *, replies: bool = False) -> None:
        self._frozen |= self._clients if replies else self._writers

    async def __aenter__(self) -> RedisProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self._clients.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            self._clients.discard(writer)
            self._tasks.discard(task)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                end.transport.abort()
                self._writers.discard(end)
                self._clients.discard(end)
                self._frozen.discard(end)
            self._tasks.discard(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                if sink not in self._frozen:
                    sink.write(data)
                    await sink.drain()
        if sink not in self._frozen:  # a vanished peer says nothing, not even goodbye
            sink.transport.abort()  # one side gone: cut the other, as a dead server would


def closed_port() -> int:
    """A local port with nothing listening (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
