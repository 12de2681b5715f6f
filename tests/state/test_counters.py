"""MemoryCounters: in-flight gauges and fixed-window hit counts."""

from __future__ import annotations

import asyncio

from keystead.state.counters import MemoryCounters


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_gauge_adds_and_reads():
    async def body() -> list[int]:
        counters = MemoryCounters()
        return [await counters.add("inflight:k1", 1), await counters.add("inflight:k1", 2),
                await counters.get("inflight:k1"), await counters.get("inflight:k2")]

    assert asyncio.run(body()) == [1, 3, 3, 0]


def test_gauge_at_zero_is_removed():
    async def body() -> None:
        counters = MemoryCounters()
        await counters.add("a", 2)
        await counters.add("b", 1)
        assert await counters.add("a", -1) == 1
        assert await counters.add("a", -1) == 0
        assert await counters.get("a") == 0
        assert "a" not in counters._gauges  # the table holds only what is in flight
        assert counters._gauges == {"b": 1}

    asyncio.run(body())


def test_gauge_can_go_negative_and_back():
    async def body() -> list[int]:
        counters = MemoryCounters()
        return [await counters.add("x", -1), await counters.get("x"), await counters.add("x", 1),
                await counters.get("x")]

    assert asyncio.run(body()) == [-1, -1, 0, 0]


def test_concurrent_adds_balance_out():
    async def body() -> int:
        counters = MemoryCounters()

        async def request() -> None:
            await counters.add("inflight", 1)
            await asyncio.sleep(0)
            await counters.add("inflight", -1)

        await asyncio.gather(*(request() for _ in range(200)))
        return await counters.get("inflight")

    assert asyncio.run(body()) == 0


def test_hits_accumulate_within_a_window():
    clock = Clock(600.0)

    async def body() -> list[int]:
        counters = MemoryCounters(clock=clock)
        results = [await counters.hit("rpm:k1", 60)]
        clock.now = 659.9  # same 60 s window [600, 660)
        results.append(await counters.hit("rpm:k1", 60))
        results.append(await counters.hit("rpm:k1", 60, amount=5))
        results.append(await counters.hit("rpm:k2", 60))
        return results

    assert asyncio.run(body()) == [1, 2, 7, 1]


def test_a_new_window_starts_from_the_amount():
    clock = Clock(600.0)

    async def body() -> list[int]:
        counters = MemoryCounters(clock=clock)
        await counters.hit("tpm:k1", 60, amount=100)
        clock.now = 660.0  # next window
        first = await counters.hit("tpm:k1", 60, amount=7)
        second = await counters.hit("tpm:k1", 60, amount=3)
        clock.now = 1000.0  # several windows later
        third = await counters.hit("tpm:k1", 60)
        return [first, second, third]

    assert asyncio.run(body()) == [7, 10, 1]


def test_windows_are_per_size():
    clock = Clock(3599.0)

    async def body() -> list[int]:
        counters = MemoryCounters(clock=clock)
        await counters.hit("per-minute", 60)
        await counters.hit("per-hour", 3600)
        clock.now = 3601.0  # crosses both the minute and the hour boundary
        after_boundary = [await counters.hit("per-minute", 60),
                          await counters.hit("per-hour", 3600)]
        clock.now = 3660.0
        return [*after_boundary, await counters.hit("per-minute", 60),
                await counters.hit("per-hour", 3600)]

    assert asyncio.run(body()) == [1, 1, 1, 2]


def test_close_clears_everything():
    async def body() -> list[int]:
        counters = MemoryCounters(clock=Clock())
        await counters.add("g", 3)
        await counters.hit("w", 60, amount=4)
        await counters.close()
        return [await counters.get("g"), await counters.hit("w", 60)]

    assert asyncio.run(body()) == [0, 1]
