"""The counters in process: the default, and the reference the Redis implementation matches
(state/counters.py says what they keep; tests/state/test_counters.py runs one contract suite on
both)."""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from keystead.state.counters import (
    BREAKER_MEMORY_S,
    PERIOD_GRACE_S,
    SETTLED_MEMORY_S,
    Admission,
    Epoch,
    Hold,
    PoolReading,
    Rate,
    RateReading,
    check_admit,
    check_settle,
    gcra,
)

__all__ = ["MemoryCounters"]


class _Pool:
    __slots__ = ("earliest", "holds", "reserved", "resets_at", "used")

    def __init__(self, used: int | None, resets_at: float | None):
        self.used = used  # None: not seeded yet (budgets) or not kept (concurrency)
        self.resets_at = resets_at
        self.reserved = 0
        self.holds: dict[str, tuple[int, float]] = {}  # request id -> (amount, lease deadline)
        self.earliest = math.inf  # no lease runs out before this: most admits skip the scan

    def hold(self, request_id: str, amount: int, deadline: float) -> None:
        self.holds[request_id] = (amount, deadline)
        self.earliest = min(self.earliest, deadline)

    def reclaim(self, now: float) -> None:
        if now < self.earliest:
            return
        expired = [rid for rid, (_amount, deadline) in self.holds.items() if deadline <= now]
        for rid in expired:
            self.reserved -= self.holds.pop(rid)[0]
        self.earliest = min((deadline for _amount, deadline in self.holds.values()),
                            default=math.inf)


class _Breaker:
    __slots__ = ("failures", "open_until", "probe_until")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.open_until = 0.0
        self.probe_until = 0.0


# An open breaker is forgotten (closed) this long after its cooldown if nobody probed it.


class MemoryCounters:
    """Counters of one process. `clock` is injectable so tests can step time exactly."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._pools: dict[str, _Pool] = {}
        self._breakers: dict[str, _Breaker] = {}
        self._settled: dict[str, float] = {}  # request id -> until when a settlement is ignored
        self._epoch: tuple[str, float] | None = None  # (id, gate over at)
        self._joining: dict[str, float] = {}  # replica -> deadline

    def _pool(self, hold: Hold, now: float) -> _Pool:
        pool = self._pools.get(hold.name)
        if pool is not None and pool.resets_at is not None \
                and pool.resets_at + PERIOD_GRACE_S <= now:
            del self._pools[hold.name]  # its period is over
            pool = None
        if pool is None:
            pool = _Pool(None if hold.resets_at is not None else 0, hold.resets_at)
            self._pools[hold.name] = pool
        pool.reclaim(now)
        return pool

    async def admit(self, request_id: str, rates: Sequence[Rate], holds: Sequence[Hold],
                    lease_s: float) -> Admission:
        check_admit(rates, holds)
        now = self._clock()
        pools = [self._pool(hold, now) for hold in holds]
        unseeded = tuple(h.name for h, p in zip(holds, pools, strict=True) if p.used is None)
        if unseeded:
            return Admission(False, unseeded=unseeded)
        steps = [gcra(self._tats.get(r.name, 0.0), now, r.limit, r.window_s, r.cost)
                 for r in rates]
        readings = tuple(RateReading(r.name, r.limit, s[2], s[3])
                         for r, s in zip(rates, steps, strict=True))
        for rate, step in zip(rates, steps, strict=True):
            if not step[0]:
                return Admission(False, readings, refused_by=rate.name, retry_after_s=step[4])
        for hold, pool in zip(holds, pools, strict=True):
            if not _fits(pool.used or 0, pool.reserved, hold.amount, hold.capacity):
                return Admission(False, readings, refused_by=hold.name, pool=PoolReading(
                    pool.used or 0, pool.reserved, len(pool.holds)))
        for rate, step in zip(rates, steps, strict=True):
            self._tats[rate.name] = step[1]
        deadline = now + lease_s
        for hold, pool in zip(holds, pools, strict=True):
            previous = pool.holds.get(request_id)
            if previous is not None:
                pool.reserved -= previous[0]
            pool.hold(request_id, hold.amount, deadline)
            pool.reserved += hold.amount
        self._forget_old(now)
        return Admission(True, readings)

    async def settle(self, request_id: str, used: Mapping[str, int], adjust: Sequence[Rate],
                     periods: Mapping[str, float] | None = None, *, once: bool = False,
                     ) -> tuple[str, ...]:
        check_settle(used)
        now = self._clock()
        if periods:
            lost = []
            for name, resets_at in periods.items():
                if used.get(name) and resets_at + PERIOD_GRACE_S > now:
                    pool = self._pools.get(name)
                    if pool is None or pool.used is None:
                        lost.append(name)
            if lost:
                return tuple(lost)
        if once:
            if self._settled.get(request_id, 0.0) > now:
                return ()
            if len(self._settled) > 10_000:
                self._settled = {rid: until for rid, until in self._settled.items()
                                 if until > now}
            self._settled[request_id] = now + SETTLED_MEMORY_S
        for name, amount in used.items():
            pool = self._pools.get(name)
            if pool is None:
                continue
            held = pool.holds.pop(request_id, None)
            if held is not None:
                pool.reserved -= held[0]
            if pool.used is not None and pool.resets_at is not None:  # concurrency: no total
                pool.used += amount
            if not pool.holds and pool.used in (None, 0) and pool.resets_at is None:
                del self._pools[name]  # keep the table as small as what is in flight
        for rate in adjust:
            # A missing tat is a past one (full burst), whether or not _forget_old dropped it.
            tat = self._tats.get(rate.name, 0.0)
            self._tats[rate.name] = max(max(tat, now) + rate.cost * rate.window_s / rate.limit,
                                        now)
        return ()

    async def renew(self, leases: Mapping[str, Sequence[str]], lease_s: float) -> None:
        now = self._clock()
        deadline = now + lease_s
        for request_id, names in leases.items():
            for name in names:
                pool = self._pools.get(name)
                held = pool.holds.get(request_id) if pool is not None else None
                # A lease that ran out stays out, reclaimed yet or not.
                if pool is not None and held is not None and held[1] > now:
                    pool.holds[request_id] = (held[0], deadline)

    async def seed(self, name: str, used: int, resets_at: float, epoch: str | None = None,
                   ) -> bool:
        pool = self._pools.get(name)
        if pool is not None and pool.used is not None:
            return True
        if epoch is not None:
            now = self._clock()
            self._drop_late_joiners(now)
            if self._epoch is None or self._epoch[0] != epoch or self._epoch[1] > now \
                    or self._joining:
                return False
        if pool is None:
            self._pools[name] = pool = _Pool(None, resets_at)
        pool.used = used
        return True

    async def epoch(self, replica: str, known: str, gate_s: float, join_s: float) -> Epoch:
        now = self._clock()
        if self._epoch is None:
            self._epoch = (os.urandom(8).hex(), now + (gate_s if known else 0.0))
            self._joining.clear()
        current, gate_until = self._epoch
        join = current != known
        if join:
            self._joining.setdefault(replica, now + join_s)
        self._drop_late_joiners(now)
        return Epoch(current, join, max(0.0, gate_until - now), len(self._joining))

    async def rejoin(self, replica: str, epoch: str, holds: Mapping[str, Sequence[Hold]],
                     lease_s: float, *, done: bool = True) -> bool:
        if self._epoch is None or self._epoch[0] != epoch:
            return False
        now = self._clock()
        deadline = now + lease_s
        for request_id, taken in holds.items():
            for hold in taken:
                pool = self._pool(hold, now)
                if request_id not in pool.holds:
                    pool.hold(request_id, hold.amount, deadline)
                    pool.reserved += hold.amount
        if done:
            self._joining.pop(replica, None)
        return True

    def _drop_late_joiners(self, now: float) -> None:
        for replica in [r for r, deadline in self._joining.items() if deadline <= now]:
            del self._joining[replica]

    async def pools(self, prefix: str) -> dict[str, PoolReading]:
        now = self._clock()
        result = {}
        for name, pool in list(self._pools.items()):
            if not name.startswith(prefix):
                continue
            if pool.resets_at is not None and pool.resets_at + PERIOD_GRACE_S <= now:
                del self._pools[name]  # its period is over (as in _pool)
                continue
            pool.reclaim(now)
            if pool.holds or pool.used:
                result[name] = PoolReading(pool.used or 0, pool.reserved, len(pool.holds))
        return result

    async def ping(self) -> None:
        return None

    def _breaker(self, name: str, now: float) -> _Breaker:
        breaker = self._breakers.get(name)
        if breaker is not None and breaker.open_until \
                and breaker.open_until + BREAKER_MEMORY_S <= now:
            breaker = None
        if breaker is None:
            breaker = self._breakers[name] = _Breaker()
        return breaker

    async def trip(self, name: str, threshold: int, window_s: float, cooldown_s: float) -> float:
        now = self._clock()
        breaker = self._breaker(name, now)
        probing, breaker.probe_until = breaker.probe_until > 0, 0.0
        failures = breaker.failures
        while failures and failures[0] <= now - window_s:
            failures.popleft()
        failures.append(now)
        if len(failures) >= threshold or probing:
            breaker.open_until = now + cooldown_s
            failures.clear()
        return breaker.open_until

    async def probe(self, name: str, ttl_s: float) -> bool:
        now = self._clock()
        breaker = self._breaker(name, now)
        if breaker.probe_until > now:
            return False
        breaker.probe_until = now + ttl_s
        return True

    async def reset(self, name: str) -> None:
        self._breakers.pop(name, None)

    async def breakers(self, names: Sequence[str]) -> dict[str, float]:
        now = self._clock()
        result = {}
        for name in names:
            breaker = self._breakers.get(name)
            if breaker is not None and breaker.open_until \
                    and breaker.open_until + BREAKER_MEMORY_S > now:
                result[name] = breaker.open_until
        return result

    def _forget_old(self, now: float) -> None:
        # Rates whose tat is in the past are back to a full burst: the entry carries nothing.
        if len(self._tats) > 10_000:
            self._tats = {name: tat for name, tat in self._tats.items() if tat > now}

    async def close(self) -> None:
        self._tats.clear()
        self._pools.clear()
        self._breakers.clear()
        self._settled.clear()


def _fits(used: int, reserved: int, amount: int, capacity: int) -> bool:
    # A zero amount (price unknown) still needs room left: a spent budget refuses everything.
    total = used + reserved + amount
    return total <= capacity if amount > 0 else total < capacity
