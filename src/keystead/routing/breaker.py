"""Circuit breakers, one per deployment, shared by every replica through the counters.

The request path reads a local copy of which breakers are open (a dict lookup); failures and
probes go to the shared counters, and the copy is refreshed from them every second, so a
deployment that fails on one replica is skipped by all of them within about a second. When the
shared counters are out of reach, a breaker of this process alone stands in: a breaker is a
protection, and a degraded one beats none.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from enum import StrEnum

from keystead.config.routing import BreakerPolicy
from keystead.state.counters import Counters, CountersUnavailable
from keystead.state.memory_counters import MemoryCounters

__all__ = ["BreakerState", "Breakers"]

log = logging.getLogger("keystead.routing")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"  # cooled down: the next request probes it


class Breakers:
    def __init__(self, counters: Counters, policy: BreakerPolicy,
                 clock: Callable[[], float] = time.time):
        self._shared = counters
        self._local = MemoryCounters(clock)
        self.policy = policy
        self._clock = clock
        self._open: dict[str, float] = {}  # deployment -> open until (epoch seconds)

    def state(self, name: str) -> BreakerState:
        until = self._open.get(name)
        if until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if until > self._clock() else BreakerState.HALF_OPEN

    def open_until(self, name: str) -> float | None:
        return self._open.get(name)

    async def allow(self, name: str, probe_ttl_s: float) -> bool:
        """May an attempt go to `name` now? A half-open breaker lets one caller through."""
        state = self.state(name)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        try:
            return await self._shared.probe(name, probe_ttl_s)
        except CountersUnavailable:
            return await self._local.probe(name, probe_ttl_s)

    async def failure(self, name: str) -> None:
        policy = self.policy
        try:
            until = await self._shared.trip(name, policy.failures, policy.window_s,
                                            policy.cooldown_s)
        except CountersUnavailable:
            until = await self._local.trip(name, policy.failures, policy.window_s,
                                           policy.cooldown_s)
        if until and until != self._open.get(name):
            log.warning("circuit breaker for deployment %s opened for %.0f s", name,
                        max(0.0, until - self._clock()))
            self._open[name] = until

    async def success(self, name: str) -> None:
        """A good answer: a breaker that was open or probing closes. Nothing to do otherwise,
        so successes cost nothing on the request path."""
        if name not in self._open:
            return
        self._open.pop(name, None)
        log.info("circuit breaker for deployment %s closed", name)
        await self._local.reset(name)
        with contextlib.suppress(CountersUnavailable):
            await self._shared.reset(name)

    async def refresh(self, names: Sequence[str]) -> None:
        """Take the shared view (what other replicas tripped or closed)."""
        try:
            shared = await self._shared.breakers(names)
        except CountersUnavailable:
            shared = {}
        local = await self._local.breakers(names)
        for name, until in local.items():
            shared[name] = max(until, shared.get(name, 0.0))
        self._open = shared
