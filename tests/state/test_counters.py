"""The Counters contract, run on both backends (MemoryCounters and RedisCounters on the real Redis,
each with the same fake clock), then what only Redis has: real concurrency across instances,
server time, outages and recovery, lost scripts, key expiry."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import pytest
import redis.exceptions

from keystead.state.counters import (
    PERIOD_GRACE_S,
    SETTLED_MEMORY_S,
    UNLIMITED,
    Admission,
    Counters,
    CountersUnavailable,
    Hold,
    PoolReading,
    Rate,
    RateReading,
)
from keystead.state.memory_counters import MemoryCounters
from keystead.state.redis_counters import RedisCounters
from redis_support import (
    RedisProxy,
    closed_port,
    delete_prefix,
    fresh_prefix,
    raw_redis,
    redis_counters,
    require_redis,
)

T0 = 1_000_000.0


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


Backend = Callable[[Clock], AbstractAsyncContextManager[Counters]]


@asynccontextmanager
async def _memory(clock: Clock) -> AsyncIterator[Counters]:
    counters = MemoryCounters(clock)
    try:
        yield counters
    finally:
        await counters.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "redis":
        require_redis()
        return lambda clock: redis_counters(clock)
    return _memory


def run(backend: Backend, clock: Clock, body: Callable[[Counters], Awaitable[None]]) -> None:
    async def main() -> None:
        async with backend(clock) as counters:
            await body(counters)

    asyncio.run(main())


def remaining(admission: Admission) -> list[int]:
    return [reading.remaining for reading in admission.rates]


# --- rates (GCRA) ---------------------------------------------------------------------------

def test_a_burst_of_limit_then_one_per_interval(backend: Backend) -> None:
    clock = Clock()
    rate = Rate("r", 5, 60, 1)  # one every 12 s

    async def body(c: Counters) -> None:
        burst = [await c.admit(f"q{i}", [rate], [], 30) for i in range(5)]
        assert all(a.allowed for a in burst)
        assert [remaining(a) for a in burst] == [[4], [3], [2], [1], [0]]
        refused = await c.admit("q5", [rate], [], 30)
        assert (refused.allowed, refused.refused_by, refused.retry_after_s) == (False, "r", 12.0)
        clock.now = T0 + 12
        assert (await c.admit("q6", [rate], [], 30)).rates == (RateReading("r", 5, 0, 60.0),)
        again = await c.admit("q7", [rate], [], 30)
        assert (again.allowed, again.retry_after_s) == (False, 12.0)

    run(backend, clock, body)


def test_readings_count_down_and_recover_with_time(backend: Backend) -> None:
    clock = Clock()
    rate = Rate("r", 10, 60, 1)  # one every 6 s

    async def body(c: Counters) -> None:
        for i in range(3):
            await c.admit(f"q{i}", [rate], [], 30)
        assert (await c.admit("q3", [rate], [], 30)).rates == (RateReading("r", 10, 6, 24.0),)
        clock.now = T0 + 12  # two intervals back
        assert (await c.admit("q4", [rate], [], 30)).rates == (RateReading("r", 10, 7, 18.0),)
        clock.now = T0 + 100  # long idle: a full burst again
        assert (await c.admit("q5", [rate], [], 30)).rates == (RateReading("r", 10, 9, 6.0),)

    run(backend, clock, body)


def test_retry_after_is_exactly_when_the_same_request_passes(backend: Backend) -> None:
    clock = Clock()
    rate = Rate("t", 10, 60, 3)  # 3 units of 6 s each

    async def body(c: Counters) -> None:
        assert [remaining(await c.admit(f"q{i}", [rate], [], 30)) for i in range(3)] == [
            [7], [4], [1]]
        refused = await c.admit("q3", [rate], [], 30)
        assert refused.rates == (RateReading("t", 10, 1, 54.0),)
        assert refused.retry_after_s == 12.0
        clock.now = T0 + 1
        assert (await c.admit("q3", [rate], [], 30)).retry_after_s == 11.0
        clock.now = T0 + 11.999
        assert not (await c.admit("q3", [rate], [], 30)).allowed
        clock.now = T0 + 12.0
        assert (await c.admit("q3", [rate], [], 30)).allowed

    run(backend, clock, body)


def test_a_cost_above_the_limit_never_passes(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        refused = await c.admit("big", [Rate("t", 100, 60, 101)], [], 30)
        assert (refused.allowed, refused.refused_by) == (False, "t")
        assert math.isinf(refused.retry_after_s)
        assert refused.rates == (RateReading("t", 100, 100, 0.0),)
        # Nothing was charged: the whole limit is still there.
        assert remaining(await c.admit("fits", [Rate("t", 100, 60, 100)], [], 30)) == [0]

    run(backend, clock, body)


def test_several_rates_are_all_or_nothing(backend: Backend) -> None:
    clock = Clock()
    wide, narrow = Rate("a", 10, 60, 1), Rate("b", 1, 60, 1)

    async def body(c: Counters) -> None:
        assert remaining(await c.admit("q1", [wide, narrow], [], 30)) == [9, 0]
        refused = await c.admit("q2", [wide, narrow], [], 30)
        assert (refused.allowed, refused.refused_by, refused.retry_after_s) == (False, "b", 60.0)
        # The first rate was not charged by the refused request: 9 -> 8, not 9 -> 7.
        assert remaining(await c.admit("q3", [wide], [], 30)) == [8]
        both = await c.admit("q4", [narrow, Rate("c", 1, 60, 1)], [], 30)
        assert both.refused_by == "b"  # the first refusing rate in order
        assert remaining(await c.admit("q5", [Rate("c", 1, 60, 1)], [], 30)) == [0]

    run(backend, clock, body)


# --- pools ----------------------------------------------------------------------------------

def test_holds_up_to_capacity_then_a_refusal_with_the_pool_reading(backend: Backend) -> None:
    clock = Clock()
    slot = Hold("c", 2, 1)

    async def body(c: Counters) -> None:
        assert (await c.admit("r1", [], [slot], 30)).allowed
        assert (await c.admit("r2", [], [slot], 30)).allowed
        refused = await c.admit("r3", [], [slot], 30)
        assert refused == Admission(False, (), refused_by="c", pool=PoolReading(0, 2, 2))
        await c.settle("r1", {"c": 0}, ())
        assert (await c.admit("r3", [], [slot], 30)).allowed
        assert await c.pools("c") == {"c": PoolReading(0, 2, 2)}

    run(backend, clock, body)


def test_a_refusing_pool_leaves_rates_and_other_pools_untouched(backend: Backend) -> None:
    clock = Clock()
    rate = Rate("a", 10, 60, 1)
    holds = [Hold("x", 5, 1), Hold("c", 1, 1)]

    async def body(c: Counters) -> None:
        assert (await c.admit("r1", [rate], holds, 30)).allowed
        refused = await c.admit("r2", [rate], holds, 30)
        assert (refused.refused_by, refused.pool) == ("c", PoolReading(0, 1, 1))
        assert remaining(refused) == [8]  # what it would have left, had it passed
        assert await c.pools("") == {"x": PoolReading(0, 1, 1), "c": PoolReading(0, 1, 1)}
        assert remaining(await c.admit("r3", [rate], [], 30)) == [8]

    run(backend, clock, body)


def test_amount_zero_needs_room_left(backend: Backend) -> None:
    clock = Clock()

    def budget(amount: int) -> Hold:
        return Hold("b", 100, amount, T0 + 3600)

    async def body(c: Counters) -> None:
        await c.seed("b", 0, T0 + 3600)
        assert (await c.admit("r1", [], [budget(0)], 30)).allowed  # 0 < 100
        assert (await c.admit("r2", [], [budget(100)], 30)).allowed  # exactly full: fits
        full = await c.admit("r3", [], [budget(0)], 30)
        assert (full.refused_by, full.pool) == ("b", PoolReading(0, 100, 2))
        await c.settle("r2", {"b": 100}, ())
        spent = await c.admit("r4", [], [budget(0)], 30)  # a spent budget refuses everything
        assert (spent.refused_by, spent.pool) == ("b", PoolReading(100, 0, 1))

    run(backend, clock, body)


def test_an_unseeded_budget_is_reported_and_nothing_changes(backend: Backend) -> None:
    clock = Clock()
    rate = Rate("a", 10, 60, 1)
    holds = [Hold("conc", 5, 1), Hold("b", 100, 10, T0 + 3600)]

    async def body(c: Counters) -> None:
        assert await c.admit("r1", [rate], holds, 30) == Admission(False, unseeded=("b",))
        assert await c.pools("") == {}
        assert remaining(await c.admit("r0", [rate], [], 30)) == [9]  # not charged before
        await c.seed("b", 30, T0 + 3600)
        assert (await c.admit("r1", [rate], holds, 30)).allowed
        assert await c.pools("") == {"conc": PoolReading(0, 1, 1), "b": PoolReading(30, 10, 1)}

    run(backend, clock, body)


def test_seed_first_writer_wins(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        await c.seed("b", 10, T0 + 3600)
        await c.seed("b", 50, T0 + 3600)
        assert (await c.admit("r1", [], [Hold("b", 100, 5, T0 + 3600)], 30)).allowed
        assert await c.pools("b") == {"b": PoolReading(10, 5, 1)}

    run(backend, clock, body)


def test_settle_adds_what_was_used_and_releases_the_hold(backend: Backend) -> None:
    clock = Clock()

    def budget(amount: int) -> Hold:
        return Hold("b", 1000, amount, T0 + 3600)

    async def body(c: Counters) -> None:
        await c.seed("b", 100, T0 + 3600)
        assert (await c.admit("r1", [], [budget(300)], 30)).allowed
        assert (await c.admit("r2", [], [budget(200)], 30)).allowed
        assert await c.pools("b") == {"b": PoolReading(100, 500, 2)}
        await c.settle("r1", {"b": 120}, ())
        assert await c.pools("b") == {"b": PoolReading(220, 200, 1)}
        await c.settle("r2", {"b": 0}, ())
        assert await c.pools("b") == {"b": PoolReading(220, 0, 0)}

    run(backend, clock, body)


def test_settle_after_the_lease_was_reclaimed_counts_money_not_the_hold(backend: Backend) -> None:
    clock = Clock()

    def budget(amount: int) -> Hold:
        return Hold("b", 400, amount, T0 + 3600)

    async def body(c: Counters) -> None:
        await c.seed("b", 100, T0 + 3600)
        assert (await c.admit("r1", [], [budget(300)], 10)).allowed
        clock.now = T0 + 5
        assert (await c.admit("r2", [], [budget(200)], 10)).pool == PoolReading(100, 300, 1)
        clock.now = T0 + 10  # r1's lease ran out (deadline <= now): reclaimed by this admit
        assert (await c.admit("r2", [], [budget(200)], 10)).allowed
        assert await c.pools("b") == {"b": PoolReading(100, 200, 1)}
        await c.settle("r1", {"b": 50}, ())  # spent, but its hold is not released twice
        assert await c.pools("b") == {"b": PoolReading(150, 200, 1)}

    run(backend, clock, body)


def test_renew_keeps_a_lease_past_its_first_deadline(backend: Backend) -> None:
    clock = Clock()
    slot = Hold("c", 1, 1)

    async def body(c: Counters) -> None:
        assert (await c.admit("r1", [], [slot], 10)).allowed  # deadline T0+10
        clock.now = T0 + 8
        await c.renew({"r1": ["c"], "unknown": ["c", "nowhere"]}, 10)  # deadline T0+18
        clock.now = T0 + 15
        assert (await c.admit("r2", [], [slot], 10)).pool == PoolReading(0, 1, 1)
        clock.now = T0 + 18
        assert (await c.admit("r2", [], [slot], 10)).allowed  # deadline T0+28
        clock.now = T0 + 30
        await c.renew({"r2": ["c"]}, 10)  # ran out already: not brought back
        assert (await c.admit("r3", [], [slot], 10)).allowed

    run(backend, clock, body)


def test_the_same_request_admitted_again_replaces_its_hold(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        assert (await c.admit("r1", [], [Hold("x", 100, 5)], 30)).allowed
        assert (await c.admit("r1", [], [Hold("x", 100, 7)], 30)).allowed
        assert await c.pools("x") == {"x": PoolReading(0, 7, 1)}

    run(backend, clock, body)


def test_a_period_pool_is_forgotten_a_grace_time_after_resets_at(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        await c.seed("b", 50, T0 + 100)
        assert (await c.admit("r1", [], [Hold("b", 100, 10, T0 + 100)], 900)).allowed
        assert await c.pools("") == {"b": PoolReading(50, 10, 1)}
        # A gateway whose clock is a little behind still finds the period's pool intact.
        clock.now = T0 + 100 + PERIOD_GRACE_S - 1
        assert await c.pools("") == {"b": PoolReading(50, 10, 1)}
        clock.now = T0 + 100 + PERIOD_GRACE_S
        assert await c.pools("") == {}
        following = Hold("b", 100, 5, T0 + 1000)
        assert await c.admit("r2", [], [following], 300) == Admission(False, unseeded=("b",))
        await c.seed("b", 0, T0 + 1000)
        assert (await c.admit("r2", [], [following], 300)).allowed
        assert await c.pools("") == {"b": PoolReading(0, 5, 1)}  # r1's old hold went too

    run(backend, clock, body)


def test_adjust_charges_or_refunds_but_never_below_full(backend: Backend) -> None:
    clock = Clock()
    tokens = Rate("tpm", 60, 60, 30)  # one token a second

    def one() -> Rate:
        return Rate("tpm", 60, 60, 1)

    async def body(c: Counters) -> None:
        assert remaining(await c.admit("r1", [tokens], [], 30)) == [30]
        await c.settle("r1", {}, [Rate("tpm", 60, 60, -20)])  # used 10, not 30
        assert (await c.admit("r2", [one()], [], 30)).rates == (RateReading("tpm", 60, 49, 11.0),)
        await c.settle("r2", {}, [Rate("tpm", 60, 60, -1000)])
        assert (await c.admit("r3", [one()], [], 30)).rates == (RateReading("tpm", 60, 59, 1.0),)
        await c.settle("r3", {}, [Rate("tpm", 60, 60, 20)])  # used more than estimated
        assert remaining(await c.admit("r4", [one()], [], 30)) == [38]
        # A rate with no state is full: an adjustment charges it from now.
        await c.settle("r5", {}, [Rate("fresh", 60, 60, 10)])
        assert remaining(await c.admit("r6", [Rate("fresh", 60, 60, 1)], [], 30)) == [49]

    run(backend, clock, body)


def test_pools_lists_what_holds_or_used_something(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        for request_id in ("r1", "r2"):
            await c.admit(request_id, [], [Hold("inflight:a", UNLIMITED, 1)], 30)
        await c.admit("r3", [], [Hold("inflight:b", 3, 1)], 30)
        await c.seed("budget:x", 7, T0 + 3600)
        await c.seed("budget:zero", 0, T0 + 3600)  # used nothing, holds nothing: not listed
        assert await c.pools("inflight:") == {"inflight:a": PoolReading(0, 2, 2),
                                              "inflight:b": PoolReading(0, 1, 1)}
        assert await c.pools("budget:") == {"budget:x": PoolReading(7, 0, 0)}
        assert len(await c.pools("")) == 3
        assert await c.pools("nothing") == {}
        await c.settle("r3", {"inflight:b": 0}, ())
        await c.settle("r1", {"inflight:a": 5}, ())  # a concurrency pool keeps no total
        assert await c.pools("inflight:") == {"inflight:a": PoolReading(0, 1, 1)}

    run(backend, clock, body)


def test_pool_names_are_taken_literally(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        await c.admit("r1", [], [Hold("a*[x]?", 5, 1), Hold("a:lease", 5, 2)], 30)
        await c.admit("r2", [], [Hold("a", 5, 3)], 30)
        assert await c.pools("a*") == {"a*[x]?": PoolReading(0, 1, 1)}
        assert await c.pools("a") == {"a*[x]?": PoolReading(0, 1, 1),
                                      "a:lease": PoolReading(0, 2, 1), "a": PoolReading(0, 3, 1)}

    run(backend, clock, body)


# --- amounts, replays and the data's generation ----------------------------------------------

def test_negative_charges_and_holds_are_refused_and_change_nothing(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        await c.seed("b", 0, T0 + 3600)
        with pytest.raises(ValueError, match="negative cost"):
            await c.admit("r1", [Rate("tpm", 100, 60, -1_000_000_000)], [], 30)
        with pytest.raises(ValueError, match="negative hold"):
            await c.admit("r1", [], [Hold("b", 100, -50, T0 + 3600)], 30)
        with pytest.raises(ValueError, match="negative use"):
            await c.settle("r1", {"b": -50}, ())
        assert remaining(await c.admit("r2", [Rate("tpm", 100, 60, 10)], [], 30)) == [90]
        assert await c.pools("") == {}
        # A settlement's adjustment may be negative: it gives back an estimate's excess.
        await c.settle("r2", {}, [Rate("tpm", 100, 60, -10)])
        assert remaining(await c.admit("r3", [Rate("tpm", 100, 60, 1)], [], 30)) == [99]

    run(backend, clock, body)


def test_a_budget_that_lost_its_total_refuses_the_settlement_whole(backend: Backend) -> None:
    clock = Clock()
    period = T0 + 3600

    async def body(c: Counters) -> None:
        # A request holds a slot and a budget; then the budget's total is gone (as after a
        # FLUSHDB and the holds taken again by the replica's rejoin, seen from the counters).
        epoch = await c.epoch("replica-a", "", 0, 30)
        await c.rejoin("replica-a", epoch.id, {"r1": [Hold("slot", 5, 1),
                                                      Hold("b", 1000, 300, period)]}, 30)
        rate = Rate("tpm", 100, 60, 40)
        assert await c.settle("r1", {"slot": 0, "b": 120}, [rate], {"b": period}) == ("b",)
        assert await c.pools("") == {"slot": PoolReading(0, 1, 1), "b": PoolReading(0, 300, 1)}
        assert remaining(await c.admit("q", [Rate("tpm", 100, 60, 1)], [], 30)) == [99]
        # Nothing to add (a failed request) needs no total: its holds go.
        assert await c.settle("r0", {"b": 0}, [], {"b": period}) == ()
        assert await c.seed("b", 500, period, epoch.id)
        assert await c.settle("r1", {"slot": 0, "b": 120}, [rate], {"b": period}) == ()
        assert await c.pools("") == {"b": PoolReading(620, 0, 0)}

    run(backend, clock, body)


def test_a_budget_whose_period_is_over_settles_without_its_total(backend: Backend) -> None:
    clock = Clock(T0 + 100 + PERIOD_GRACE_S)

    async def body(c: Counters) -> None:
        assert await c.settle("r1", {"b": 120}, [], {"b": T0 + 100}) == ()
        assert await c.pools("") == {}

    run(backend, clock, body)


def test_a_settlement_applied_once_ignores_its_replay(backend: Backend) -> None:
    clock = Clock()
    budget = Hold("b", 1000, 300, T0 + 3600)

    async def body(c: Counters) -> None:
        await c.seed("b", 100, T0 + 3600)
        assert (await c.admit("r1", [Rate("tpm", 100, 60, 50)], [budget], 30)).allowed
        for _ in range(3):  # the first attempt, then two replays of it
            assert await c.settle("r1", {"b": 120}, [Rate("tpm", 100, 60, -30)],
                                  {"b": T0 + 3600}, once=True) == ()
        assert await c.pools("b") == {"b": PoolReading(220, 0, 0)}
        assert remaining(await c.admit("q", [Rate("tpm", 100, 60, 1)], [], 30)) == [79]
        # Another request is its own settlement; without `once` nothing is remembered.
        assert await c.settle("r2", {"b": 5}, [], {"b": T0 + 3600}, once=True) == ()
        await c.settle("r3", {"b": 1}, [])
        await c.settle("r3", {"b": 1}, [])
        assert await c.pools("b") == {"b": PoolReading(227, 0, 0)}

    run(backend, clock, body)


def test_a_first_epoch_is_open_at_once_and_others_join_it(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        first = await c.epoch("a", "", gate_s=3, join_s=30)  # nobody saw data before it
        assert (first.join, first.wait_s, first.joining) == (True, 0.0, 1)
        assert not first.ready
        assert not await c.seed("b", 7, T0 + 3600, first.id)  # "a" has not joined yet
        assert await c.rejoin("a", first.id, {}, 30)
        again = await c.epoch("a", first.id, gate_s=3, join_s=30)
        assert again == (first.id, False, 0.0, 0) and again.ready
        assert await c.seed("b", 7, T0 + 3600, first.id)
        assert await c.seed("b", 9, T0 + 3600, "another")  # seeded already: first writer won
        assert await c.pools("b") == {"b": PoolReading(7, 0, 0)}
        # A replica that starts later joins the same generation.
        late = await c.epoch("b", "", gate_s=3, join_s=30)
        assert (late.id, late.join, late.joining) == (first.id, True, 1)
        assert not await c.rejoin("b", "another", {}, 30)
        assert (await c.epoch("a", first.id, 3, 30)).joining == 1
        assert await c.rejoin("b", first.id, {"r1": [Hold("slot", 5, 1)]}, 30, done=False)
        assert (await c.epoch("a", first.id, 3, 30)).joining == 1  # holds back, not done yet
        assert await c.pools("slot") == {"slot": PoolReading(0, 1, 1)}
        assert await c.rejoin("b", first.id, {"r1": [Hold("slot", 5, 1)]}, 30)
        assert (await c.epoch("a", first.id, 3, 30)).ready

    run(backend, clock, body)


def test_a_replica_that_saw_the_data_go_closes_seeding_for_the_gate_time(backend: Backend,
                                                                          ) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        fresh = await c.epoch("a", "an-earlier-generation", gate_s=3, join_s=30)
        assert (fresh.join, fresh.wait_s) == (True, 3.0)
        assert await c.rejoin("a", fresh.id, {}, 30)
        assert not await c.seed("b", 7, T0 + 3600, fresh.id)
        clock.now = T0 + 2
        assert (await c.epoch("a", fresh.id, 3, 30)).wait_s == pytest.approx(1.0)
        assert not await c.seed("b", 7, T0 + 3600, fresh.id)
        clock.now = T0 + 3
        assert (await c.epoch("a", fresh.id, 3, 30)).ready
        assert await c.seed("b", 7, T0 + 3600, fresh.id)

    run(backend, clock, body)


def test_a_replica_that_never_joins_holds_seeding_for_join_s_at_most(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        state = await c.epoch("a", "", 0, join_s=10)
        assert await c.rejoin("a", state.id, {}, 30)
        await c.epoch("dies-joining", "", 0, join_s=10)
        await c.epoch("dies-joining", "", 0, join_s=10)  # asking again does not extend it
        clock.now = T0 + 9
        assert not await c.seed("b", 7, T0 + 3600, state.id)
        clock.now = T0 + 10
        assert (await c.epoch("a", state.id, 0, 10)).ready
        assert await c.seed("b", 7, T0 + 3600, state.id)

    run(backend, clock, body)


def test_rejoin_takes_holds_again_without_a_capacity_check(backend: Backend) -> None:
    clock = Clock()
    period = T0 + 3600

    async def body(c: Counters) -> None:
        state = await c.epoch("a", "", 0, 30)
        assert (await c.admit("kept", [], [Hold("slot", 2, 1)], 30)).allowed
        assert await c.rejoin("a", state.id, {
            "kept": [Hold("slot", 2, 1)],  # still there: not taken twice
            "r1": [Hold("slot", 2, 1), Hold("b", 100, 80, period)],
            "r2": [Hold("slot", 2, 1), Hold("b", 100, 80, period)]}, 10)
        assert await c.pools("") == {"slot": PoolReading(0, 3, 3), "b": PoolReading(0, 160, 2)}
        assert await c.seed("b", 0, period, state.id)
        refused = await c.admit("r3", [], [Hold("b", 100, 1, period)], 30)
        assert refused.pool == PoolReading(0, 160, 2)
        clock.now = T0 + 10  # retaken holds are leases like any other
        assert await c.pools("") == {"slot": PoolReading(0, 1, 1)}

    run(backend, clock, body)


# --- Redis only -----------------------------------------------------------------------------

@pytest.fixture
def redis_up() -> None:
    require_redis()


@pytest.mark.usefixtures("redis_up")
def test_concurrent_admits_from_several_replicas_never_exceed_capacity() -> None:
    async def main() -> None:
        prefix = fresh_prefix()
        async with AsyncExitStack() as stack:
            replicas = [await stack.enter_async_context(redis_counters(prefix=prefix))
                        for _ in range(4)]
            rate, slot = Rate("rph", 1200, 3600, 1), Hold("slots", 50, 1)
            admitted = await asyncio.gather(*(
                replicas[i % 4].admit(f"s{i}", [rate], [slot], 30) for i in range(200)))
            assert sum(a.allowed for a in admitted) == 50
            assert await replicas[1].pools("slots") == {"slots": PoolReading(0, 50, 50)}
            # Only the 50 admitted were charged: 1200 - 50 - this one.
            assert remaining(await replicas[2].admit("x", [rate], [], 30)) == [1149]

            await replicas[0].seed("budget", 0, time.time() + 3600)
            budget = Hold("budget", 1000, 7, time.time() + 3600)
            admitted = await asyncio.gather(*(
                replicas[i % 4].admit(f"b{i}", [], [budget], 30) for i in range(200)))
            assert sum(a.allowed for a in admitted) == 1000 // 7
            assert await replicas[3].pools("budget") == {"budget": PoolReading(0, 994, 142)}

            narrow = Rate("narrow", 25, 3600, 1)
            admitted = await asyncio.gather(*(
                replicas[i % 4].admit(f"n{i}", [narrow], [], 30) for i in range(200)))
            assert sum(a.allowed for a in admitted) == 25

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_a_burst_beyond_the_pool_waits_for_connections_instead_of_failing() -> None:
    """redis-py's default pool raises past 100 concurrent calls; a burst is not an outage."""

    async def main() -> None:
        async with redis_counters() as counters:
            counters._redis.connection_pool.max_connections = 8  # type: ignore[attr-defined]
            slot = Hold("burst", 10_000, 1)
            admitted = await asyncio.gather(*(counters.admit(f"r{i}", [], [slot], 30)
                                              for i in range(400)))
            assert all(a.allowed for a in admitted)
            await counters.ping()

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_without_a_clock_redis_server_time_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 10 * 86_400)  # this host's clock is off

    async def main() -> None:
        async with redis_counters() as c, raw_redis() as raw:
            first = await c.admit("q", [Rate("r", 60, 3600, 1)], [], 30)  # one a minute
            seconds, micros = await raw.time()
            server_now = seconds + micros / 1e6
            stored = await raw.get(c._rate_prefix + "r")
            assert stored is not None
            tat = float(stored)
            assert abs(tat - (server_now + 60)) < 1.0
            assert first.rates[0].remaining == 59
            assert abs(first.rates[0].reset_s - 60) < 1e-3

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_an_unreachable_redis_raises_counters_unavailable_fast() -> None:
    async def main() -> None:
        counters = RedisCounters(f"redis://127.0.0.1:{closed_port()}/0", "x:", timeout_s=0.2,
                                 connect_timeout_s=0.2)
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: counters.admit("r", [Rate("a", 1, 60, 1)], [Hold("b", 1, 1)], 30),
            lambda: counters.settle("r", {"b": 1}, [Rate("a", 1, 60, -1)]),
            lambda: counters.renew({"r": ["b"]}, 30),
            lambda: counters.seed("b", 0, T0),
            lambda: counters.pools(""),
        ]
        try:
            for call in calls:
                started = time.monotonic()
                with pytest.raises(CountersUnavailable) as caught:
                    await call()
                assert time.monotonic() - started < 0.2
                assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
        finally:
            await counters.close()

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_a_redis_that_stops_answering_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            counters = RedisCounters(f"redis://127.0.0.1:{port}/0", "x:", timeout_s=0.2)
            started = time.monotonic()
            with pytest.raises(CountersUnavailable) as caught:
                await counters.admit("r", [Rate("a", 1, 60, 1)], [], 30)
            assert 0.2 <= time.monotonic() - started < 1.0
            assert isinstance(caught.value.__cause__, redis.exceptions.TimeoutError)
            await counters.close()
            await asyncio.sleep(0.01)  # the handler sees the client hang up and closes its end
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_a_server_that_is_not_redis_is_redis_unavailable() -> None:
    """A `redis.url` pointing at something else (an HTTP server, a proxy answering its own
    error page): the reply cannot be read, which is Redis being unavailable (the outage policy
    applies), not a raw error out of the request."""
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            counters = RedisCounters(f"redis://127.0.0.1:{port}/0", "x:", timeout_s=0.3)
            with pytest.raises(CountersUnavailable) as caught:
                await counters.admit("r", [Rate("a", 1, 60, 1)], [], 30)
            assert isinstance(caught.value.__cause__, redis.exceptions.RedisError)
            await counters.close()
            await asyncio.sleep(0.01)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_the_next_call_works_after_the_connection_was_killed() -> None:
    clock = Clock()
    rate = Rate("r", 10, 60, 1)

    async def main() -> None:
        async with redis_counters(clock) as c, raw_redis() as raw:
            assert remaining(await c.admit("q1", [rate], [], 30)) == [9]
            # Kill exactly the connection admits go on (other tests may share the server).
            host, port = c._conn._writer.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
            killed = await raw.client_kill_filter(addr=f"{host}:{port}")
            assert killed == 1
            assert remaining(await c.admit("q2", [rate], [], 30)) == [8]

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_counters_recover_by_themselves_when_redis_comes_back() -> None:
    clock = Clock()
    rate = Rate("r", 10, 60, 1)

    async def main() -> None:
        async with RedisProxy() as proxy, redis_counters(
                clock, url=proxy.url, timeout_s=0.3, connect_timeout_s=0.3) as c:
            assert remaining(await c.admit("q1", [rate], [], 30)) == [9]
            await proxy.stop()
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(CountersUnavailable):
                    await c.admit("q2", [rate], [], 30)
                assert time.monotonic() - started < 0.3
            await proxy.start()
            assert remaining(await c.admit("q2", [rate], [], 30)) == [8]  # the state survived

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_scripts_are_reloaded_after_script_flush() -> None:
    clock = Clock()

    async def main() -> None:
        async with redis_counters(clock) as c, raw_redis() as raw:
            assert (await c.admit("r1", [Rate("a", 5, 60, 1)], [Hold("p", 2, 1)], 30)).allowed
            await raw.script_flush()
            assert (await c.admit("r2", [Rate("a", 5, 60, 1)], [Hold("p", 2, 1)], 30)).allowed
            await raw.script_flush()
            await c.renew({"r1": ["p"]}, 30)
            await raw.script_flush()
            await c.settle("r1", {"p": 0}, [Rate("a", 5, 60, -1)])
            await raw.script_flush()
            await c.seed("b", 3, T0 + 60)
            await raw.script_flush()
            assert await c.pools("") == {"p": PoolReading(0, 1, 1), "b": PoolReading(3, 0, 0)}

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_every_key_is_under_the_prefix_and_expires() -> None:
    clock = Clock()

    async def main() -> None:
        async with redis_counters(clock) as c, raw_redis() as raw:
            prefix = c._prefix
            await c.seed("budget", 0, T0 + 3600)
            assert (await c.admit("r1", [Rate("r", 10, 60, 3)],
                                  [Hold("budget", 100, 10, T0 + 3600), Hold("slot", 5, 1)],
                                  30)).allowed
            keys = sorted([k.decode() async for k in raw.scan_iter(match=prefix + "*")])
            assert keys == sorted(prefix + k for k in (
                "rate:r", "pool:budget:total", "pool:budget:lease", "pool:budget:held",
                "pool:budget:reserved", "pool:slot:lease", "pool:slot:held",
                "pool:slot:reserved"))

            async def ttl(key: str) -> int:
                return int(await raw.pttl(prefix + key))

            assert 17_000 < await ttl("rate:r") <= 18_000  # until tat: 3 units of 6 s
            assert 89_900_000 < await ttl("pool:budget:total") <= 90_000_000  # resets_at + 1 day
            for key in ("lease", "held", "reserved"):  # outlive the lease, by one lease at most
                assert 30_000 < await ttl(f"pool:slot:{key}") <= 60_000
            await c.renew({"r1": ["slot"]}, 100)
            for key in ("lease", "held", "reserved"):
                assert 100_000 < await ttl(f"pool:slot:{key}") <= 200_000

            await c.settle("r1", {"budget": 4, "slot": 0}, [Rate("r", 10, 60, -1000)],
                           {"budget": T0 + 3600}, once=True)
            await c.epoch("replica", "", 3, 30)
            left = sorted([k.decode() async for k in raw.scan_iter(match=prefix + "*")])
            # Empty pools and full rates vanish; the marker of a settlement and the epoch stay.
            assert left == sorted(prefix + k for k in (
                "pool:budget:total", "settled:r1", "epoch", "epoch:joining"))
            assert SETTLED_MEMORY_S * 1000 - 1000 < await ttl("settled:r1") \
                <= SETTLED_MEMORY_S * 1000
            assert 86_399_000 < await ttl("epoch") <= 86_400_000
            assert 30_000 < await ttl("epoch:joining") <= 31_000

    asyncio.run(main())


@pytest.mark.usefixtures("redis_up")
def test_redis_losing_its_data_is_a_new_generation_every_replica_joins() -> None:
    clock = Clock()
    period = T0 + 3600

    async def main() -> None:
        async with redis_counters(clock) as a, \
                redis_counters(clock, prefix=a._prefix, cleanup=False) as b:
            first = await a.epoch("a", "", 3, 30)
            assert await a.rejoin("a", first.id, {}, 30)
            assert (await b.epoch("b", "", 3, 30)).id == first.id
            assert await b.rejoin("b", first.id, {}, 30)
            assert await a.seed("budget", 100, period, first.id)
            assert (await a.admit("r1", [], [Hold("budget", 1000, 300, period)], 30)).allowed
            await delete_prefix(a._prefix)  # what FLUSHDB does to this prefix
            # Replica b settles first: its budget lost its total, nothing is counted nowhere.
            assert await b.settle("r9", {"budget": 50}, [], {"budget": period}) == ("budget",)
            assert not await b.seed("budget", 0, period, first.id)  # not this generation
            # Replica a notices the loss: a new generation, closed for seeding for 3 s.
            second = await a.epoch("a", first.id, 3, 30)
            assert second.id != first.id and second.join and second.wait_s == 3.0
            assert await a.rejoin("a", second.id, {"r1": [Hold("budget", 1000, 300, period)]},
                                  30)
            noticed = await b.epoch("b", first.id, 3, 30)
            assert (noticed.id, noticed.join, noticed.joining) == (second.id, True, 1)
            assert await b.rejoin("b", second.id, {}, 30)
            clock.now = T0 + 3
            assert await b.seed("budget", 150, period, second.id)
            assert await b.settle("r9", {"budget": 50}, [], {"budget": period}) == ()
            assert await a.pools("budget") == {"budget": PoolReading(200, 300, 1)}

    asyncio.run(main())


def test_memory_forgets_a_settlement_asked_once_after_settled_memory_s() -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        await c.seed("b", 0, T0 + 3600)
        await c.settle("r1", {"b": 1}, [], once=True)
        clock.now = T0 + SETTLED_MEMORY_S - 1
        await c.settle("r1", {"b": 1}, [], once=True)
        clock.now = T0 + SETTLED_MEMORY_S
        await c.settle("r1", {"b": 1}, [], once=True)
        assert await c.pools("b") == {"b": PoolReading(2, 0, 0)}

    run(_memory, clock, body)


# --- breakers -------------------------------------------------------------------------------

def test_a_breaker_opens_at_the_threshold_and_probes_once_when_cooled(backend: Backend) -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        assert await c.trip("dep", 3, 30, 10) == 0.0
        assert await c.trip("dep", 3, 30, 10) == 0.0
        assert await c.breakers(["dep", "other"]) == {}
        opened = await c.trip("dep", 3, 30, 10)
        assert opened == pytest.approx(T0 + 10)
        assert await c.breakers(["dep", "other"]) == {"dep": pytest.approx(T0 + 10)}
        clock.now = T0 + 11  # cooled down: half-open, one probe at a time
        assert await c.probe("dep", 5) is True
        assert await c.probe("dep", 5) is False
        # The probe failed: open again at once, whatever the count.
        assert await c.trip("dep", 3, 30, 10) == pytest.approx(T0 + 21)
        clock.now = T0 + 22
        assert await c.probe("dep", 5) is True
        await c.reset("dep")  # the probe succeeded
        assert await c.breakers(["dep"]) == {}
        assert await c.trip("dep", 3, 30, 10) == 0.0  # counting starts again

    run(backend, clock, body)


def test_memory_breaker_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()

    async def body(c: Counters) -> None:
        await c.trip("dep", 2, 30, 10)
        clock.now = T0 + 31
        assert await c.trip("dep", 2, 30, 10) == 0.0
        clock.now = T0 + 32
        assert await c.trip("dep", 2, 30, 10) == pytest.approx(T0 + 42)

    run(_memory, clock, body)


def test_rates_alone_are_admitted_without_a_request_id_or_holds(backend: Backend) -> None:
    """How the router charges a deployment's own quota: rates only, nothing to settle."""
    clock = Clock()

    async def body(c: Counters) -> None:
        rate = Rate("deploy:rpm:p/m", 2, 60, 1)
        assert [(await c.admit("", [rate], (), 0.0)).allowed for _ in range(3)] == [
            True, True, False]

    run(backend, clock, body)
