"""`RedisCache`: cache entries shared by every replica, in Redis. See store.py for the rules
every store follows; this module is imported only when `routing.cache_backend` is redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from keystead.cache.store import DEFAULT_MAX_ENTRY_BYTES, CacheStats, CacheUnavailable

__all__ = ["RedisCache"]

log = logging.getLogger("keystead.cache")

_T = TypeVar("_T")
_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError)  # OSError: TimeoutError too


class RedisCache:
    """Entries in Redis, shared by every replica: `SET {prefix}{key} value PX ttl`, `GET`.

    The client is set up as `RedisCounters`' (a bounded pool that waits for a free connection,
    no redis-py retries, one retry of our own on a connection that died idle in the pool), with
    shorter timeouts: a lookup that takes longer than an upstream call has no point. Keys are
    `{prefix}{cache key}`, prefix "keystead:cache:" by default; the entries expire by themselves,
    so a Redis with `maxmemory-policy volatile-lru` (or allkeys-lru if it holds only the cache)
    bounds the memory.
    """

    def __init__(self, url: str, prefix: str = "keystead:cache:", *,
                 max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES, timeout_s: float = 0.25,
                 connect_timeout_s: float = 0.5, max_connections: int = 64,
                 retry_after_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.prefix = prefix
        self.max_entry_bytes = max_entry_bytes
        self._retry_after_s = retry_after_s
        self._clock = clock
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout_s,
            socket_timeout=timeout_s, socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0), health_check_interval=0)
        self._redis: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._down = False
        self._down_until = 0.0
        self._hits = self._misses = self._sets = self._too_large = 0
        self._errors = self._skipped = 0

    async def _do(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """`call`, once more on a fresh connection if the pooled one had died while idle
        (Redis restarted, a proxy cut it). Timeouts are not retried: that doubles the wait."""
        try:
            return await call()
        except RedisConnectionError as exc:
            if type(exc) is not RedisConnectionError:
                raise
            return await call()

    def _backing_off(self) -> bool:
        if self._down and self._clock() < self._down_until:
            self._skipped += 1
            return True
        return False

    def _failed(self, exc: BaseException) -> None:
        self._errors += 1
        self._down_until = self._clock() + self._retry_after_s
        if not self._down:
            self._down = True
            log.warning("response cache: Redis unavailable (%s: %s); answering without the "
                        "cache until it is back", type(exc).__name__, exc)

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            log.warning("response cache: Redis is back")

    async def get(self, key: str) -> bytes | None:
        if self._backing_off():
            self._misses += 1
            return None
        name = self.prefix + key
        try:
            value = await self._do(lambda: self._redis.get(name))
        except _FAILURES as exc:
            self._failed(exc)
            self._misses += 1
            return None
        self._succeeded()
        if value is None:
            self._misses += 1
            return None
        self._hits += 1
        return value if isinstance(value, bytes) else str(value).encode()

    async def set(self, key: str, value: bytes, ttl_s: float) -> bool:
        if len(value) > self.max_entry_bytes:
            self._too_large += 1
            return False
        milliseconds = int(ttl_s * 1000)
        if milliseconds <= 0 or self._backing_off():
            return False
        name = self.prefix + key
        try:
            await self._do(lambda: self._redis.set(name, value, px=milliseconds))
        except _FAILURES as exc:
            self._failed(exc)
            return False
        self._succeeded()
        self._sets += 1
        return True

    async def delete_prefix(self, prefix: str) -> int:
        pattern = _glob_escape(self.prefix + prefix) + "*"
        deleted = 0
        try:
            batch: list[bytes] = []
            async for name in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 500:
                    deleted += await self._redis.unlink(*batch)
                    batch = []
            if batch:
                deleted += await self._redis.unlink(*batch)
        except _FAILURES as exc:
            self._failed(exc)
            raise CacheUnavailable(f"Redis: {exc}") from exc
        self._succeeded()
        return deleted

    async def stats(self) -> CacheStats:
        return CacheStats("redis", self._hits, self._misses, self._sets, self._too_large,
                          errors=self._errors, skipped=self._skipped, available=not self._down)

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)
