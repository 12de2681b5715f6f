"""Admits and settlements gathered into one script call (state/redis_batch.py), on the real Redis:
what goes together, that a settlement still lands before `settle` returns, the bound on how
long it can wait, and what happens to settlements waiting when Redis goes away or the gateway
shuts down."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from redis.exceptions import ResponseError

from keystead.config.model import LimitsConfig
from keystead.errors import LimitsUnavailable
from keystead.pipeline.limits import Limiter
from keystead.state.counters import Admission, CountersUnavailable, Hold, PoolReading, Rate
from keystead.state.records import KeyRecord, Limits
from keystead.state.redis_counters import RedisCounters
from redis_support import (
    REDIS_URL,
    RedisProxy,
    fresh_prefix,
    raw_redis,
    redis_counters,
    require_redis,
)

PERIOD = time.time() + 86_400


@pytest.fixture(autouse=True)
def _redis_up() -> None:
    require_redis()


def calls(counters: RedisCounters) -> int:
    return counters._batch.calls


def test_a_settlement_and_an_admit_go_in_one_call_and_the_admit_sees_the_freed_slot() -> None:
    async def main() -> None:
        async with redis_counters() as c:
            slot = Hold("slot", 1, 1)
            assert (await c.admit("r1", [], [slot], 30)).allowed
            before = calls(c)
            # The admit is asked for first; the settlement still goes first in the call.
            admitted, lost = await asyncio.gather(c.admit("r2", [], [slot], 30),
                                                  c.settle("r1", {"slot": 0}, []))
            assert calls(c) == before + 1
            assert admitted.allowed and lost == ()
            assert await c.pools("slot") == {"slot": PoolReading(0, 1, 1)}

    asyncio.run(main())


def test_a_burst_of_settlements_in_one_turn_is_one_call() -> None:
    async def main() -> None:
        async with redis_counters(lambda: PERIOD - 3600) as c:
            await c.seed("budget", 0, PERIOD)
            # (an interval of 2**-14 s: GCRA's sums are exact)
            budget, rate = Hold("budget", 10**9, 1000, PERIOD), Rate("tpm", 2**20, 64, 100)
            for i in range(100):
                assert (await c.admit(f"r{i}", [rate], [budget], 30)).allowed
            before = calls(c)
            replies = await asyncio.gather(*(
                c.settle(f"r{i}", {"budget": 10 + i}, [rate._replace(cost=-50)],
                         {"budget": PERIOD}, once=True) for i in range(100)))
            assert calls(c) == before + 1
            assert replies == [()] * 100
            assert await c.pools("budget") == {
                "budget": PoolReading(sum(10 + i for i in range(100)), 0, 0)}
            # Each adjustment landed: 100 charged 100 and were given 50 back.
            reading = (await c.admit("probe", [rate._replace(cost=0)], [], 30)).rates[0]
            assert reading.remaining == 2**20 - 100 * 50

    asyncio.run(main())


def test_more_than_a_call_carries_goes_in_the_next_calls_settlements_first() -> None:
    async def main() -> None:
        async with redis_counters() as c:
            c._batch._max_ops = 10
            slot = Hold("slot", 5, 1)
            for i in range(5):
                assert (await c.admit(f"h{i}", [], [slot], 30)).allowed
            before = calls(c)
            # 25 admits and 5 settlements: the settlements take the first call, so 5 of the
            # admits find room, whichever order the callers came in.
            admits = [c.admit(f"a{i}", [], [slot], 30) for i in range(25)]
            settles = [c.settle(f"h{i}", {"slot": 0}, []) for i in range(5)]
            results = await asyncio.gather(*admits, *settles)
            assert calls(c) == before + 3
            assert sum(a.allowed for a in results[:25]) == 5

    asyncio.run(main())


def test_a_settlement_waits_for_at_most_the_call_on_its_way() -> None:
    """The bound: a settlement goes in the first call that starts after it was asked for; so
    another replica sees the slot it frees one round trip later at most, and at the latest
    when `settle` returns."""

    async def main() -> None:
        prefix = fresh_prefix()
        async with redis_counters(prefix=prefix) as a, redis_counters(prefix=prefix) as b:
            slot = Hold("slot", 1, 1)
            assert (await a.admit("r1", [], [slot], 30)).allowed
            assert not (await b.admit("r2", [], [slot], 30)).allowed
            # A call of A's is on its way (other requests' admits)...
            busy = [asyncio.create_task(a.admit(f"x{i}", [Rate("r", 10**6, 60, 1)], [], 30))
                    for i in range(20)]
            await asyncio.sleep(0)  # they ask (and the sender is started)...
            await asyncio.sleep(0)  # ... the sender takes them all and sends them
            assert a._batch.waiting == 0 and a._batch._sender is not None
            first = calls(a)
            settled = asyncio.create_task(a.settle("r1", {"slot": 0}, []))
            started = time.monotonic()
            await settled
            waited = time.monotonic() - started
            await asyncio.gather(*busy)
            # ... and the settlement went in the very next one.
            assert calls(a) == first + 1
            assert waited < 0.5  # two round trips on a local Redis, nowhere near the timeout
            assert (await b.admit("r2", [], [slot], 30)).allowed

    asyncio.run(main())


def test_two_replicas_settling_and_admitting_never_exceed_nor_starve_a_pool() -> None:
    """Replicas A and B share 4 slots; each runs 4 request loops (admit, hold, settle). Every
    admit is refused only while 4 holds are in Redis: one taken after a settle returned, never."""

    async def main() -> None:
        prefix = fresh_prefix()
        async with redis_counters(prefix=prefix) as a, redis_counters(prefix=prefix) as b:
            slot = Hold("slot", 4, 1)
            refused = 0

            async def loop(counters: RedisCounters, name: str) -> None:
                nonlocal refused
                for i in range(40):
                    admission = await counters.admit(f"{name}{i}", [], [slot], 30)
                    if not admission.allowed:
                        assert admission.pool == PoolReading(0, 4, 4)
                        refused += 1
                        continue
                    await asyncio.sleep(0)
                    await counters.settle(f"{name}{i}", {"slot": 0}, [])

            await asyncio.gather(*(loop(c, f"{n}{k}-") for c, n in ((a, "a"), (b, "b"))
                                   for k in range(4)))
            assert await a.pools("slot") == {}  # every hold given back
            # Once every settlement returned, both replicas see all 4 slots free.
            taken = await asyncio.gather(*(c.admit(f"last{i}", [], [slot], 30)
                                           for i, c in enumerate((a, b, a, b))))
            assert all(t.allowed for t in taken)
            assert refused < 8 * 40

    asyncio.run(main())


def test_close_sends_every_settlement_asked_for() -> None:
    async def main() -> None:
        prefix = fresh_prefix()
        async with redis_counters(prefix=prefix) as reader:
            await reader.seed("budget", 0, PERIOD)
            c = RedisCounters(REDIS_URL, prefix)
            budget = Hold("budget", 10**9, 1000, PERIOD)
            for i in range(30):
                assert (await c.admit(f"r{i}", [], [budget], 30)).allowed
            # Settlements asked for (tasks started, none answered yet), then shutdown.
            tasks = [asyncio.create_task(c.settle(f"r{i}", {"budget": 7}, [],
                                                  {"budget": PERIOD}, once=True))
                     for i in range(30)]
            await asyncio.sleep(0)
            await c.close()
            assert all(t.done() and t.result() == () for t in tasks)
            assert await reader.pools("budget") == {"budget": PoolReading(30 * 7, 0, 0)}

    asyncio.run(main())


def _key() -> KeyRecord:
    return KeyRecord(id="k1", name="prod-batch", key_hash="h", env="prod", team=None,
                     limits=Limits(budget_usd=Decimal("1.00"), budget_period="day",
                                   max_parallel=100))


async def _spend(*_: Any) -> int:
    return 0


def test_settlements_waiting_when_redis_goes_away_are_kept_and_counted_once() -> None:
    """Redis stops answering (it still runs the commands) while settlements wait behind the
    call on its way: each settle returns (its ledger row is written), each is replayed once
    Redis is back, and the budget ends at exactly what was spent, with nothing held."""

    async def main() -> None:
        async with RedisProxy() as proxy, redis_counters(
                url=proxy.url, timeout_s=0.3, connect_timeout_s=0.3) as counters:
            lim = Limiter(counters, LimitsConfig(), _spend, shared=True)
            scopes = lim.scopes(_key(), None)
            tickets = [await lim.admit(f"r{i}", scopes, 0, Decimal("0.05")) for i in range(12)]
            proxy.freeze(replies=True)  # the next call runs in Redis; its answer never comes
            costs = [Decimal("0.01") * (1 + i % 3) for i in range(12)]
            first = asyncio.create_task(lim.settle(tickets[0], 10, costs[0]))
            await asyncio.sleep(0)  # that call is on its way; the others wait behind it
            rest = [asyncio.create_task(lim.settle(t, 10, c))
                    for t, c in zip(tickets[1:], costs[1:], strict=True)]
            await asyncio.gather(first, *rest)  # every settle returns: no row is lost
            assert not lim.healthy
            pending = lim.status()["pending_settlements"]
            assert isinstance(pending, int) and pending >= 1
            # While Redis is out, a budget is not spent past its counters (fails closed).
            with pytest.raises(LimitsUnavailable):
                await lim.admit("during", scopes, 0, Decimal("0.05"))
            await lim._maintain_once()  # a new connection answers: the queue is replayed
            assert lim.healthy and lim.status()["pending_settlements"] == 0
            pools = await counters.pools("")
            budget = [p for name, p in pools.items() if name.startswith("pool:budget:")]
            assert [(p.used, p.reserved) for p in budget] == [(int(sum(costs) * 10**9), 0)]
            assert not [p for name, p in pools.items() if p.holders]  # no hold left behind
            await lim.close()

    asyncio.run(main())


def test_a_refused_connection_fails_every_waiting_operation_fast() -> None:
    async def main() -> None:
        async with RedisProxy() as proxy, redis_counters(
                url=proxy.url, timeout_s=0.3, connect_timeout_s=0.3) as c:
            assert (await c.admit("r0", [], [Hold("slot", 10, 1)], 30)).allowed
            await proxy.stop()
            started = time.monotonic()
            results = await asyncio.gather(
                *(c.settle(f"r{i}", {"slot": 0}, []) for i in range(5)),
                c.admit("r9", [], [Hold("slot", 10, 1)], 30), return_exceptions=True)
            assert all(isinstance(r, CountersUnavailable) for r in results)
            assert time.monotonic() - started < 0.3
            await proxy.start()
            assert await c.settle("r0", {"slot": 0}, []) == ()
            async with raw_redis() as raw:
                assert await raw.exists(c._pool_prefix + "slot:lease") == 0

    asyncio.run(main())


def test_a_slot_freed_before_the_next_admit_on_the_same_replica_is_free_for_it() -> None:
    """`max_parallel: 1` and a client that sends its next request as soon as the answer came:
    the settlement (asked for after the answer went out) is applied before that next admit,
    whether it is still waiting or already on its way: one connection, one call at a time,
    settlements first."""

    async def main() -> None:
        async with redis_counters() as c:
            slot = Hold("slot", 1, 1)
            assert (await c.admit("r0", [], [slot], 30)).allowed
            settling = []
            for i in range(1, 200):
                settling.append(asyncio.create_task(c.settle(f"r{i - 1}", {"slot": 0}, [])))
                for _ in range(i % 3):  # sometimes still waiting, sometimes on its way
                    await asyncio.sleep(0)
                assert (await c.admit(f"r{i}", [], [slot], 30)).allowed
            assert await asyncio.gather(*settling) == [()] * 199

    asyncio.run(main())


def test_one_operations_script_error_fails_that_operation_only() -> None:
    """A pool key of the wrong type (another program's, or a hand edit) breaks the requests that
    use that pool, as it did with a call each: the settlements and admits gathered with them
    still apply and answer, and no settlement is lost with the bad one."""

    async def main() -> None:
        async with redis_counters() as c:
            ok = Hold("ok", 10, 1)
            assert (await c.admit("r1", [], [ok], 30)).allowed
            async with raw_redis() as raw:
                await raw.set(c._pool_prefix + "bad:held", "not a hash")
            # Settlements first, in the order asked: the bad one is ahead of the good one.
            bad, settled, admitted = await asyncio.gather(
                c.settle("rb", {"bad": 0}, []), c.settle("r1", {"ok": 0}, []),
                c.admit("r2", [], [ok], 30), return_exceptions=True)
            assert isinstance(bad, ResponseError) and "WRONGTYPE" in str(bad)
            assert settled == ()
            assert isinstance(admitted, Admission) and admitted.allowed
            assert await c.pools("ok") == {"ok": PoolReading(0, 1, 1)}  # r1 gone, r2 holds

    asyncio.run(main())


def test_an_admit_whose_caller_left_before_it_was_sent_is_not_applied() -> None:
    """A client that disconnects while its admit waits behind the call on its way: nobody will
    settle that admit, so it must not take a hold (it would hold a slot, or its worst case of a
    budget, for a whole lease). A settlement whose caller left still applies, once."""

    async def main() -> None:
        async with redis_counters() as c:
            slot = Hold("slot", 10, 1)
            assert (await c.admit("done", [], [slot], 30)).allowed
            busy = asyncio.create_task(c.admit("busy", [], [slot], 30))
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # the busy admit is on its way
            assert c._batch.waiting == 0 and c._batch._sender is not None
            left = asyncio.create_task(c.admit("left", [], [slot], 30))
            settling = asyncio.create_task(c.settle("done", {"slot": 0}, []))
            await asyncio.sleep(0)  # both wait for the next call
            assert c._batch.waiting == 2
            left.cancel()
            settling.cancel()
            assert (await busy).allowed
            await c._batch.drain()
            async with raw_redis() as raw:
                holders = await raw.zrange(c._pool_prefix + "slot:lease", 0, -1)
            assert holders == [b"busy"]

    asyncio.run(main())


def test_a_call_answered_with_the_wrong_number_of_replies_fails_that_call_only() -> None:
    """Never with BATCH as written; if it happened, its callers get an error (not a
    cancellation, which the limiter would not queue for replay) and the operations waiting
    behind that call are still sent."""

    async def main() -> None:
        async with redis_counters() as c:
            slot = Hold("slot", 10, 1)
            for i in range(2):
                assert (await c.admit(f"r{i}", [], [slot], 30)).allowed
            send = c._batch._send

            async def short(batch: list[Any]) -> list[Any]:
                c._batch._send = send  # this call only
                return (await send(batch))[:-1]

            c._batch._send = short
            first = asyncio.create_task(c.settle("r0", {"slot": 0}, []))
            await asyncio.sleep(0)
            await asyncio.sleep(0)  # that call is on its way
            behind = asyncio.create_task(c.settle("r1", {"slot": 0}, []))
            failed, settled = await asyncio.gather(first, behind, return_exceptions=True)
            assert isinstance(failed, Exception) and not isinstance(failed, CountersUnavailable)
            assert settled == ()
            assert await c.pools("slot") == {}

    asyncio.run(main())
