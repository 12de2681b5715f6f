"""The hot-counters interface: what it keeps, its types, and the rules both implementations
share (`memory_counters.MemoryCounters` in process, `redis_counters.RedisCounters` in Redis).

Counters hold the state that changes on every request and that replicas must agree on:

- **rates** (GCRA): at most `limit` units per `window_s`, with bursts up to `limit`. Exact at
  window edges (no fixed-window double burst), one number per rule (the theoretical arrival time).
- **pools**: a capacity shared by requests in flight. A request *holds* an amount from admit to
  settle (a budget's worst-case cost, or one slot of a concurrency cap); at settle it releases the
  hold and adds what it really used to the pool's settled total. Holds are leases: a replica that
  dies stops renewing them and they are reclaimed when the lease runs out.

- **epochs**: the generation of the counters' data. Redis can lose everything it holds (FLUSHDB,
  a restart without persistence); a budget's settled total can then be seeded again from the
  ledger, but only once every replica has put back what the ledger does not know yet: the holds
  of its requests in flight, and the ledger rows it has not written. So a new generation starts
  closed for seeding; each replica that notices it *joins* (written ledger, holds re-taken) and
  seeding opens when the gate time has passed and nobody is still joining.

- **breakers**: a deployment's circuit breaker. Failures are counted in a window; enough of them
  open it until a time; after that time one caller at a time may claim the probe (half-open); a
  success resets it, a failure while probing opens it again. Replicas share it, so a deployment
  that fails on one replica is cooled down on all of them.

`admit` is all or nothing: every rate is charged and every hold taken, or nothing changes. So is
`settle`: a budget that lost its settled total refuses the whole settlement (the request's money
must land in a seeded total, never nowhere). The in-process implementation is the reference;
the Redis one does the same in one Lua call.

Amounts are never negative (a negative hold or charge would credit a budget or a rate): `admit`
and `settle` raise ValueError for one. Only `settle`'s rate adjustments may be negative: they
give back what an estimate charged too much.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = [
    "BREAKER_MEMORY_S",
    "SETTLED_MEMORY_S",
    "Admission",
    "Counters",
    "CountersUnavailable",
    "Epoch",
    "Hold",
    "PoolReading",
    "Rate",
    "RateReading",
    "check_admit",
    "check_settle",
    "gcra",
]

UNLIMITED = 2**62  # capacity of a pool that only counts (in-flight requests without a cap)
# A budget pool is forgotten this long after its period ended, not at once: a gateway whose
# clock is behind the counters' still names the old period for a while, and must not find an
# empty (unseeded) pool there.
PERIOD_GRACE_S = 300
# A settlement asked to be applied once is remembered this long: a replay after a timeout (the
# first attempt may have been applied, its answer lost) within it changes nothing.
SETTLED_MEMORY_S = 600


class CountersUnavailable(Exception):
    """The counters backend cannot be reached (Redis down); the limiter decides what to do."""


# Rate and Hold are made on every request: named tuples cost a third of a frozen dataclass.
class Rate(NamedTuple):
    """A GCRA rule: at most `limit` units per `window_s` seconds; this request costs `cost`."""

    name: str
    limit: int
    window_s: int
    cost: int


class Hold(NamedTuple):
    """Hold `amount` of pool `name` (capacity `capacity`) while the request runs.

    `resets_at` is set for pools with a settled total (budgets: the end of the period, after which
    the pool is forgotten); None for pools that only hold (concurrency).
    """

    name: str
    capacity: int
    amount: int
    resets_at: float | None = None


@dataclass(frozen=True, slots=True)
class RateReading:
    name: str
    limit: int
    remaining: int
    reset_s: float  # seconds until the whole limit is available again


class Epoch(NamedTuple):
    """The generation of the counters' data, as one replica sees it."""

    id: str
    join: bool  # the replica knew another generation (or none): it must join this one
    wait_s: float  # seconds until the gate time is over (0.0: over)
    joining: int  # replicas that noticed this generation and have not joined it yet

    @property
    def ready(self) -> bool:
        """Budgets may be seeded: the gate time is over and nobody is still joining."""
        return self.wait_s <= 0 and self.joining == 0


@dataclass(frozen=True, slots=True)
class PoolReading:
    used: int  # settled total (0 for pools without one)
    reserved: int  # held by requests in flight
    holders: int


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    rates: tuple[RateReading, ...] = ()  # every rate after this request (before, if refused)
    refused_by: str | None = None  # the rate or pool that said no
    retry_after_s: float = 0.0  # for a refusing rate: when the same request would pass
    pool: PoolReading | None = None  # the refusing pool's state
    unseeded: tuple[str, ...] = ()  # pools whose settled total must be seeded; nothing changed


class Counters(Protocol):
    async def admit(self, request_id: str, rates: Sequence[Rate], holds: Sequence[Hold],
                    lease_s: float) -> Admission:
        """Charge every rate and take every hold, or change nothing and say why not."""

    async def settle(self, request_id: str, used: Mapping[str, int], adjust: Sequence[Rate],
                     periods: Mapping[str, float] | None = None, *, once: bool = False,
                     ) -> tuple[str, ...]:
        """End the request: release its holds, add `used[pool]` to each pool's settled total
        (even when the lease was reclaimed meanwhile: the money was spent), and charge each
        rate in `adjust` by its (possibly negative) cost, to settle estimates to real usage.

        `periods` names the budgets among `used` (pool -> resets_at). A budget with something
        to add that has no settled total although its period is not over lost it (Redis lost
        its data): then nothing changes and those pools are returned, to be seeded before the
        settlement is tried again. `once`: remember the request for SETTLED_MEMORY_S and ignore
        any later settlement of it (a replay whose first attempt was applied after all)."""

    async def renew(self, leases: Mapping[str, Sequence[str]], lease_s: float) -> None:
        """Extend the leases of requests still running (request id -> its pools)."""

    async def seed(self, name: str, used: int, resets_at: float, epoch: str | None = None,
                   ) -> bool:
        """Set a pool's settled total, unless it has one already (first writer wins). True
        when the pool has one now. With `epoch`, only in that generation and only once it is
        ready (see `epoch`); False otherwise, and nothing changed."""

    async def epoch(self, replica: str, known: str, gate_s: float, join_s: float) -> Epoch:
        """The current generation of the data, started if there is none (Redis lost its data,
        or is new): closed for seeding for `gate_s` if `known` names an earlier one (a replica
        that saw the data go), open at once if not. A replica whose `known` is not the current
        one is registered as joining, for `join_s` at most (a replica that dies joining must
        not keep budgets closed)."""

    async def rejoin(self, replica: str, epoch: str, holds: Mapping[str, Sequence[Hold]],
                     lease_s: float, *, done: bool = True) -> bool:
        """Join generation `epoch`: take again the holds of requests still running (request id
        -> its holds; admitted already, so without a capacity check; a hold still there is kept)
        and, if `done`, stop counting as joining. False, and nothing changed, if `epoch` is not
        current."""

    async def pools(self, prefix: str) -> dict[str, PoolReading]:
        """Pools whose name starts with `prefix` and that hold or used something."""

    async def ping(self) -> None:
        """A cheap round trip: raises CountersUnavailable while the backend is out of reach."""

    async def trip(self, name: str, threshold: int, window_s: float, cooldown_s: float) -> float:
        """Count one failure of breaker `name`. With `threshold` failures in `window_s`, or a
        failure while a probe is out, the breaker opens for `cooldown_s`. Returns the time it
        is open until (0.0: closed)."""

    async def probe(self, name: str, ttl_s: float) -> bool:
        """Claim the one probe of a half-open breaker for `ttl_s`; False if someone has it."""

    async def reset(self, name: str) -> None:
        """Close breaker `name`: a success."""

    async def breakers(self, names: Sequence[str]) -> dict[str, float]:
        """Open-until times of those of `names` that are open or half-open."""

    async def close(self) -> None: ...


def gcra(tat: float, now: float, limit: int, window_s: int, cost: int
         ) -> tuple[bool, float, int, float, float]:
    """One GCRA step: (allowed, new tat, remaining, reset_s, retry_after_s).

    The emission interval is window/limit and the burst tolerance the whole window, so a fresh
    rule admits `limit` units at once and then one unit per interval.
    """
    interval = window_s / limit
    base = max(tat, now)
    new_tat = base + cost * interval
    if new_tat - now <= window_s + 1e-9:
        remaining = math.floor((window_s - (new_tat - now)) / interval + 1e-9)
        return True, new_tat, remaining, new_tat - now, 0.0
    remaining = max(0, math.floor((window_s - (base - now)) / interval + 1e-9))
    retry = new_tat - window_s - now if cost <= limit else math.inf
    return False, base, remaining, base - now, retry


BREAKER_MEMORY_S = 600.0


def check_admit(rates: Sequence[Rate], holds: Sequence[Hold]) -> None:
    """A negative charge would credit a rate, a negative hold a pool: never."""
    for rate in rates:
        if rate.cost < 0:
            raise ValueError(f"rate {rate.name}: negative cost {rate.cost}")
    for hold in holds:
        if hold.amount < 0:
            raise ValueError(f"pool {hold.name}: negative hold {hold.amount}")


def check_settle(used: Mapping[str, int]) -> None:
    if any(amount < 0 for amount in used.values()):
        name, amount = next((n, a) for n, a in used.items() if a < 0)
        raise ValueError(f"pool {name}: negative use {amount}")
