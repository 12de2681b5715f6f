"""The hot-counters interface, and its in-process implementation.

Counters hold state that changes on every request and that replicas must agree on: in-flight
requests, windows of requests per key. In-process by default; the Redis implementation (the
scale-out issue) keeps the same methods, each one atomic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Counters", "MemoryCounters"]


class Counters(Protocol):
    async def add(self, name: str, delta: int) -> int:
        """Add `delta` to a gauge and return its new value (in-flight requests)."""

    async def get(self, name: str) -> int: ...

    async def gauges(self, prefix: str) -> dict[str, int]:
        """Every non-zero gauge whose name starts with `prefix` (for status pages)."""

    async def hit(self, name: str, window_s: int, amount: int = 1) -> int:
        """Count `amount` in the current fixed window of `window_s` seconds; return the total."""

    async def close(self) -> None: ...


class MemoryCounters:
    def __init__(self, clock: Callable[[], float] = time.time):
        self._gauges: dict[str, int] = {}
        self._windows: dict[str, tuple[int, int]] = {}
        self._clock = clock

    async def add(self, name: str, delta: int) -> int:
        value = self._gauges.get(name, 0) + delta
        if value:
            self._gauges[name] = value
        else:
            self._gauges.pop(name, None)  # keep the table as small as what is in flight
        return value

    async def get(self, name: str) -> int:
        return self._gauges.get(name, 0)

    async def gauges(self, prefix: str) -> dict[str, int]:
        return {k: v for k, v in self._gauges.items() if k.startswith(prefix)}

    async def hit(self, name: str, window_s: int, amount: int = 1) -> int:
        window = int(self._clock() // window_s)
        current, total = self._windows.get(name, (window, 0))
        total = total + amount if current == window else amount
        self._windows[name] = (window, total)
        return total

    async def close(self) -> None:
        self._gauges.clear()
        self._windows.clear()
