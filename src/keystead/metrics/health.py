"""Redis and database health for scrapes: a ping with a short timeout, its answer kept a few
seconds, so a scrape storm (or many Prometheus servers) costs the dependencies one ping each
per interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["CachedPing"]


class CachedPing:
    def __init__(self, ping: Callable[[], Awaitable[object]], *, timeout_s: float = 0.5,
                 keep_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._ping = ping
        self._timeout_s = timeout_s
        self._keep_s = keep_s
        self._clock = clock
        self._at = -float("inf")
        self._up = False
        self._lock = asyncio.Lock()

    async def up(self) -> bool:
        """True when the dependency answered within the timeout (at most `keep_s` ago)."""
        async with self._lock:  # concurrent scrapes share one ping
            if self._clock() - self._at < self._keep_s:
                return self._up
            try:
                await asyncio.wait_for(self._ping(), self._timeout_s)
                self._up = True
            except Exception:  # down, slow or refusing: all the same to a gauge
                self._up = False
            self._at = self._clock()
            return self._up
