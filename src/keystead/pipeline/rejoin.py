"""Rejoin the shared counters after Redis lost its data, so that budgets stay exact.

Redis can lose everything it holds (FLUSHDB, a restart without persistence): the budgets'
settled totals, the holds of requests in flight, the markers of settlements. A budget is then
seeded again from the ledger, and that seed is exact only if the ledger holds every row settled
before it and every request still running holds its reservation again. The counters number the
generations of their data (`Counters.epoch`); every replica that notices a new one joins it:

1. it takes again the holds of its requests in flight (`Counters.rejoin`), at once;
2. it waits for its settlements already on their way to Redis, so that their ledger rows are
   queued (the data plane queues a request's row right after its settlement returns);
3. it writes its ledger queue (`LedgerWriter.sync`): every row settled before is in the ledger;
4. it takes the holds of the requests in flight now (the same ones, and any admitted since; a
   hold still there is kept) and stops counting as joining.

Seeding stays closed until the gate time is over (three maintenance intervals: every replica
asks at least twice in it) and no replica is still joining. A settlement that finds its budget
without a total changes nothing and waits for the seed, its holds kept and renewed; it lands
after the seed, and its ledger row, queued after it, is never in the seed too. Settlements that
were waiting for Redis when the data went are dropped: the ledger holds them (step 2).

A replica that does not reach Redis within the gate time is taken for dead: like a replica
that dies, its requests in flight may then spend without a reservation (docs/limits.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

from keystead.errors import LimitsUnavailable
from keystead.state.counters import Counters, Epoch, Hold

__all__ = ["Rejoin"]

log = logging.getLogger("keystead.limits")

_DRAIN_S = 5.0  # longest wait for settlements on their way (each is bounded by Redis timeouts)
_FRESH_S = 0.05  # waiters share one answer about the generation for this long


class Rejoin:
    """One replica's side of the counters' generations (see the module docstring)."""

    def __init__(self, counters: Counters, *, lease_s: float, interval_s: float,
                 holds: Callable[[], Mapping[str, Sequence[Hold]]],
                 joined: Callable[[int], int], cutoff: Callable[[], int]):
        self.replica = os.urandom(6).hex()
        self.known = ""  # the generation this replica has joined ("" before the first)
        self.gate_s = 3 * interval_s
        self.join_s = lease_s
        self.ledger_sync: Callable[[], Awaitable[None]] | None = None
        self._counters = counters
        self._lease_s = lease_s
        self._holds = holds  # request id -> holds, of the requests in flight on `counters`
        self._cutoff = cutoff  # the sequence number of the next settlement queued for Redis
        self._joined = joined  # drops the queued settlements before a cutoff, says how many
        self._lock = asyncio.Lock()
        self._last: tuple[float, Epoch] | None = None
        self._generation = 0  # of settlements on their way
        self._settling: dict[int, int] = {}
        self._settled = asyncio.Event()

    @contextlib.contextmanager
    def settling(self) -> Iterator[None]:
        """Around a settlement's call to Redis: a join waits for the ones on their way."""
        generation = self._generation
        self._settling[generation] = self._settling.get(generation, 0) + 1
        try:
            yield
        finally:
            left = self._settling[generation] - 1
            if left:
                self._settling[generation] = left
            else:
                del self._settling[generation]
                self._settled.set()

    async def check(self, fresh_s: float = 0.0) -> Epoch:
        """The current generation; joined first if this replica has not joined it yet.
        Raises CountersUnavailable, or LimitsUnavailable when the ledger cannot be written."""
        async with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < fresh_s:
                return self._last[1]
            state = await self._counters.epoch(self.replica, self.known, self.gate_s,
                                               self.join_s)
            if state.join and await self._join(state):
                state = await self._counters.epoch(self.replica, self.known, self.gate_s,
                                                   self.join_s)
            self._last = (time.monotonic(), state)
            return state

    def forget(self) -> None:
        """The last answer is out of date (a seed was refused): the next check asks Redis."""
        self._last = None

    async def ready(self, deadline: float) -> None:
        """Wait until budgets may be seeded (monotonic `deadline`); LimitsUnavailable when
        they may not by then. Raises CountersUnavailable when Redis cannot be reached."""
        while True:
            state = await self.check(fresh_s=_FRESH_S)
            if state.ready:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise LimitsUnavailable(
                    "The budget counters are being rebuilt after Redis lost its data: every "
                    f"gateway puts back its requests in flight first ({state.joining} still "
                    "at it).",
                    hint="Retry in a second or two. Operators: see 'What fails how' in "
                         "docs/scaling.md.")
            await asyncio.sleep(min(max(state.wait_s, _FRESH_S), 0.25, left))

    async def _join(self, state: Epoch) -> bool:
        started = time.monotonic()
        # The holds first: should writing the ledger fail, they still count.
        first = self._holds()
        if not await self._counters.rejoin(self.replica, state.id, first, self._lease_s,
                                           done=False):
            return False  # yet another generation: the next check joins that one
        generation = self._generation
        self._generation += 1
        while any(g <= generation for g in self._settling) \
                and time.monotonic() - started < _DRAIN_S:
            self._settled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), 0.1)
        cutoff = self._cutoff()
        if self.ledger_sync is not None:
            try:  # bounded: the maintenance loop renewing leases may be waiting for this join
                await asyncio.wait_for(self.ledger_sync(), self._lease_s / 2)
            except Exception as exc:
                raise LimitsUnavailable(
                    "The budget counters are being rebuilt after Redis lost its data, and this "
                    "gateway cannot write its usage ledger (the database does not answer).",
                    hint="Retry shortly. Operators: see 'What fails how' in "
                         "docs/scaling.md.") from exc
        holds = self._holds()
        if not await self._counters.rejoin(self.replica, state.id, holds, self._lease_s):
            return False  # yet another generation: the next check joins that one
        # Requests that ended meanwhile (settled in the lost data, or queued): give back the
        # holds taken again for them (a release adds nothing; a second one changes nothing).
        for request_id in first.keys() - holds.keys():
            await self._counters.settle(request_id, dict.fromkeys(
                (hold.name for hold in first[request_id]), 0), ())
        previous, self.known = self.known, state.id
        dropped = self._joined(cutoff)
        if previous:
            log.warning("the shared counters lost their data (Redis flushed or restarted "
                        "empty): this gateway wrote its usage ledger, took again the holds of "
                        "%d requests in flight and dropped %d settlements the ledger holds, in "
                        "%.2fs; budgets are seeded from the ledger once every gateway did",
                        len(holds), dropped, time.monotonic() - started)
        return True
