"""Where cache entries live: in this process (`MemoryCache`, here) or shared by replicas
(`RedisCache`, in redis_store: imported only when configured, so the embedded default never
loads redis-py).

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

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DEFAULT_MAX_ENTRY_BYTES", "CacheStats", "CacheStore", "CacheUnavailable",
           "MemoryCache"]

DEFAULT_MAX_ENTRY_BYTES = 1024 * 1024


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
