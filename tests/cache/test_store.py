"""The stores: MemoryCache's TTL, LRU and byte budget on a fake clock; RedisCache against the
real local Redis, and through an outage (a closed port, a proxy taken down)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from keystead.cache.key import key_prefix
from keystead.cache.redis_store import RedisCache
from keystead.cache.store import CacheStore, CacheUnavailable, MemoryCache
from redis_support import (
    REDIS_URL,
    RedisProxy,
    closed_port,
    delete_prefix,
    fresh_prefix,
    raw_redis,
    require_redis,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        await asyncio.wait_for(test(), 30)

    asyncio.run(main())


# --- MemoryCache --------------------------------------------------------------------------------


def test_memory_get_set_and_ttl() -> None:
    async def test() -> None:
        clock = FakeClock()
        cache = MemoryCache(clock=clock)
        assert await cache.get("t:chat.completions:a") is None
        assert await cache.set("t:chat.completions:a", b"answer", ttl_s=60)
        assert await cache.get("t:chat.completions:a") == b"answer"
        clock.now += 59.9
        assert await cache.get("t:chat.completions:a") == b"answer"
        clock.now += 0.1
        assert await cache.get("t:chat.completions:a") is None  # expired exactly at the TTL
        stats = await cache.stats()
        assert (stats.hits, stats.misses, stats.expired, stats.sets) == (2, 2, 1, 1)
        assert stats.entries == 0 and stats.bytes == 0
        assert not await cache.set("k", b"v", ttl_s=0)  # no TTL: nothing stored
        assert await cache.get("k") is None

    run(test)


def test_memory_replaces_and_each_set_has_its_own_ttl() -> None:
    async def test() -> None:
        clock = FakeClock()
        cache = MemoryCache(clock=clock)
        await cache.set("short", b"1", ttl_s=10)
        await cache.set("long", b"2", ttl_s=100)
        await cache.set("short", b"one", ttl_s=20)  # replaced: new value, new TTL
        assert (await cache.stats()).bytes == len("short") + 3 + len("long") + 1
        clock.now += 15
        assert await cache.get("short") == b"one"
        clock.now += 10
        assert await cache.get("short") is None and await cache.get("long") == b"2"

    run(test)


def test_memory_evicts_least_recently_used_to_stay_under_its_byte_budget() -> None:
    async def test() -> None:
        cache = MemoryCache(max_bytes=1000, clock=FakeClock())
        for name in "abcd":
            assert await cache.set(name, name.encode() * 199, ttl_s=60)  # 200 bytes each
        assert await cache.get("a") is not None  # a is now the most recently used
        await cache.set("e", b"e" * 199, ttl_s=60)  # 1000 bytes: fits exactly
        await cache.set("f", b"f" * 199, ttl_s=60)  # over: b (least recently used) goes
        assert await cache.get("b") is None
        for name in "acdef":  # read in this order: a is now the least recently used
            assert await cache.get(name) is not None
        await cache.set("g", b"g" * 399, ttl_s=60)  # needs two slots: a and c go
        assert await cache.get("a") is None and await cache.get("c") is None
        stats = await cache.stats()
        assert stats.evictions == 3 and stats.bytes is not None and stats.bytes <= 1000
        assert stats.entries == 4

    run(test)


def test_memory_drops_expired_entries_before_evicting_live_ones() -> None:
    async def test() -> None:
        clock = FakeClock()
        cache = MemoryCache(max_bytes=1000, clock=clock)
        await cache.set("old", b"x" * 497, ttl_s=5)
        await cache.set("live", b"y" * 496, ttl_s=500)
        clock.now += 10
        await cache.set("new", b"z" * 497, ttl_s=500)
        assert await cache.get("live") is not None and await cache.get("new") is not None
        stats = await cache.stats()
        assert (stats.expired, stats.evictions, stats.entries) == (1, 0, 2)

    run(test)


def test_memory_refuses_entries_over_the_cap() -> None:
    async def test() -> None:
        cache = MemoryCache(max_bytes=10_000, max_entry_bytes=100, clock=FakeClock())
        assert not await cache.set("big", b"x" * 101, ttl_s=60)
        assert await cache.set("ok", b"x" * 100, ttl_s=60)
        small = MemoryCache(max_bytes=50, clock=FakeClock())
        assert not await small.set("k", b"x" * 60, ttl_s=60)  # bigger than the whole budget
        assert (await cache.stats()).too_large == 1 and (await small.stats()).entries == 0

    run(test)


def test_memory_delete_prefix_flushes_a_tenant_or_one_endpoint() -> None:
    async def test() -> None:
        cache = MemoryCache(clock=FakeClock())
        await flush_contract(cache)
        await cache.close()
        assert (await cache.stats()).entries == 0

    run(test)


async def flush_contract(cache: CacheStore) -> None:
    for key in ("a:chat.completions:1", "a:chat.completions:2", "a:embeddings:1",
                "ab:chat.completions:1", "b:chat.completions:1"):
        assert await cache.set(key, key.encode(), ttl_s=60)
    assert await cache.delete_prefix(key_prefix("a", "chat.completions")) == 2
    assert await cache.get("a:embeddings:1") == b"a:embeddings:1"
    assert await cache.delete_prefix(key_prefix("a")) == 1
    assert await cache.get("ab:chat.completions:1") is not None  # "ab" is not "a"
    assert await cache.get("b:chat.completions:1") is not None
    assert await cache.delete_prefix(key_prefix("nobody")) == 0


# --- RedisCache ---------------------------------------------------------------------------------


@asynccontextmanager
async def redis_cache(url: str = REDIS_URL, **options: Any) -> AsyncIterator[RedisCache]:
    require_redis()
    prefix = fresh_prefix()
    cache = RedisCache(url, prefix, **options)
    try:
        yield cache
    finally:
        await cache.close()
        await delete_prefix(prefix)


def test_redis_get_set_ttl_and_bytes() -> None:
    async def test() -> None:
        async with redis_cache() as cache:
            value = bytes(range(256)) * 10
            assert await cache.get("t:chat.completions:a") is None
            assert await cache.set("t:chat.completions:a", value, ttl_s=30)
            assert await cache.get("t:chat.completions:a") == value
            async with raw_redis() as raw:
                ttl = await raw.pttl(cache.prefix + "t:chat.completions:a")
                assert 29_000 < ttl <= 30_000  # SET ... PX
            assert await cache.set("short", b"v", ttl_s=0.05)
            await asyncio.sleep(0.15)
            assert await cache.get("short") is None
            assert not await cache.set("none", b"v", ttl_s=0)
            stats = await cache.stats()
            assert (stats.backend, stats.hits, stats.misses, stats.sets) == ("redis", 1, 2, 2)
            assert stats.available and stats.errors == 0

    run(test)


def test_redis_refuses_entries_over_the_cap() -> None:
    async def test() -> None:
        async with redis_cache(max_entry_bytes=100) as cache:
            assert not await cache.set("big", b"x" * 101, ttl_s=60)
            assert await cache.get("big") is None
            assert (await cache.stats()).too_large == 1

    run(test)


def test_redis_delete_prefix() -> None:
    async def test() -> None:
        async with redis_cache() as cache:
            await flush_contract(cache)
            # Glob characters in a tenant are matched literally.
            await cache.set("x*:chat.completions:1", b"1", ttl_s=60)
            await cache.set("xy:chat.completions:1", b"1", ttl_s=60)
            assert await cache.delete_prefix("x*:") == 1
            assert await cache.get("xy:chat.completions:1") == b"1"

    run(test)


def test_redis_on_a_closed_port_is_a_miss_never_an_error(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    async def test() -> None:
        cache = RedisCache(f"redis://127.0.0.1:{closed_port()}/0", retry_after_s=0)
        try:
            with caplog.at_level(logging.WARNING, logger="keystead.cache"):
                for _ in range(3):
                    assert await cache.get("k") is None
                    assert not await cache.set("k", b"v", ttl_s=60)
            warnings = [r for r in caplog.records if r.name == "keystead.cache"]
            assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
            stats = await cache.stats()
            assert (stats.errors, stats.misses, stats.sets, stats.available) == (6, 3, 0, False)
            with pytest.raises(CacheUnavailable):
                await cache.delete_prefix("t:")
        finally:
            await cache.close()

    run(test)


def test_redis_outage_backs_off_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    async def test() -> None:
        require_redis()
        clock = FakeClock()
        async with RedisProxy() as proxy, \
                redis_cache(proxy.url, retry_after_s=5, clock=clock) as cache:
            assert await cache.set("k", b"v", ttl_s=60)
            await proxy.stop()
            with caplog.at_level(logging.WARNING, logger="keystead.cache"):
                assert await cache.get("k") is None  # fails: one error, then back-off
                assert await cache.get("k") is None  # not even tried
                assert not await cache.set("k2", b"v", ttl_s=60)
                stats = await cache.stats()
                assert (stats.errors, stats.skipped, stats.available) == (1, 2, False)
                await proxy.start()
                assert await cache.get("k") is None  # still backing off
                clock.now += 5
                assert await cache.get("k") == b"v"  # tried again: back
            stats = await cache.stats()
            assert stats.available and stats.hits == 1
            messages = [r.getMessage() for r in caplog.records if r.name == "keystead.cache"]
            assert len(messages) == 2 and "back" in messages[1]

    run(test)
