"""Where cache entries live: in this process (`MemoryCache`) or shared by replicas (`RedisCache`).

Both take opaque keys (`key.cache_key`) and values (`CachedResponse.to_bytes()`), a TTL per
`set` (the route's), and refuse values over `max_entry_bytes` (1 MiB by default) so that one
huge answer cannot push out thousands of small ones.

The cache is an optimisation, never a dependency: `RedisCache` turns every Redis failure into a
miss (get) or a dropped write (set), counts it, logs once per outage, and then leaves Redis
alone for `retry_after_s` so that a Redis that hangs does not add its timeout to every request.
Only `delete_prefix`, an operator's flush, raises (`CacheUnavailable`): a flush that silently did
nothing would leave the answers someone wanted gone.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

__all__ = ["CacheStats", "CacheStore", "CacheUnavailable", "MemoryCache", "RedisCache"]

log = logging.getLogger("keystead.cache")

DEFAULT_MAX_ENTRY_BYTES = 1024 * 1024
_T = TypeVar("_T")
_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError)  # OSError: TimeoutError too


class CacheUnavailable(Exception):
    """The store could not carry out an operator's request (a flush)."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    backend: str  # "memory" or "redis"
    hits: int
    misses: int  # not found, expired, or the store unavailable
    sets: int  # entries written
    too_large: int  # writes refused: over max_entry_bytes
    evictions: int = 0  # memory: dropped least recently used to stay under max_bytes
    expired: int = 0  # memory: found past their TTL
    errors: int = 0  # redis: calls that failed (get -> miss, set dropped)
    skipped: int = 0  # redis: calls not tried during an outage's back-off
    entries: int | None = None  # memory only (Redis shares its keyspace)
    bytes: int | None = None  # memory only: keys + values
    available: bool = True  # redis: False while in an outage


class CacheStore(Protocol):
    max_entry_bytes: int

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Store `value` for `ttl_s` seconds; False if it was not (too large, no TTL, down)."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every entry whose key starts with `prefix`; how many there were."""
        ...

    async def stats(self) -> CacheStats: ...

    async def close(self) -> None: ...


class MemoryCache:
    """Entries in this process: a TTL each, LRU eviction under a total byte budget.

    Expiry is lazy (an expired entry is dropped when read, or when it reaches the LRU end), so
    no background task; everything is synchronous under the hood, so no lock either. Sizes count
    keys and values, not Python's per-object overhead (~150 bytes an entry).
    """

    def __init__(self, *, max_bytes: int = 64 * 1024 * 1024,
                 max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
                 clock: Callable[[], float] = time.monotonic):
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._sets = self._too_large = 0
        self._evictions = self._expired = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            self._misses += 1
            return None
        if entry[1] <= self._clock():
            self._drop(key)
            self._expired += 1
            self._misses += 1
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return entry[0]

    async def set(self, key: str, value: bytes, ttl_s: float) -> bool:
        size = len(key) + len(value)
        if len(value) > self.max_entry_bytes or size > self.max_bytes:
            self._too_large += 1
            return False
        if key in self._entries:
            self._drop(key)
        if ttl_s <= 0:
            return False
        now = self._clock()
        self._entries[key] = (value, now + ttl_s)
        self._bytes += size
        self._sets += 1
        entries = self._entries
        # The oldest entries first: the expired among them go for free, then LRU to fit.
        while entries:
            oldest, (_, expires) = next(iter(entries.items()))
            if expires <= now:
                self._expired += 1
            elif self._bytes > self.max_bytes:
                self._evictions += 1
            else:
                break
            self._drop(oldest)
        return True

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self._bytes -= len(key) + len(value)

    async def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self._entries if key.startswith(prefix)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    async def stats(self) -> CacheStats:
        return CacheStats("memory", self._hits, self._misses, self._sets, self._too_large,
                          evictions=self._evictions, expired=self._expired,
                          entries=len(self._entries), bytes=self._bytes)

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0


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
