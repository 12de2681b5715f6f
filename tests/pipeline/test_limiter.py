"""The limiter: scopes -> rates and holds, refusals with OpenAI's headers, budgets that hold,
seeding from the ledger, and what happens when the shared counters are down."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from keystead.config.model import LimitsConfig
from keystead.errors import BudgetExceeded, InvalidField, LimitsUnavailable, RateLimited
from keystead.pipeline.limits import Limiter, format_reset, period_bounds
from keystead.state.counters import (
    Admission,
    CountersUnavailable,
    Epoch,
    Hold,
    PoolReading,
    Rate,
)
from keystead.state.memory_counters import MemoryCounters
from keystead.state.records import KeyRecord, Limits, TeamRecord
from redis_support import RedisProxy, redis_counters, require_redis

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Ledger:
    """Stands in for Store.spend_nanousd: what the ledger says each scope spent."""

    def __init__(self, spent: dict[tuple[str, str], int] | None = None):
        self.spent = spent or {}
        self.asked: list[tuple[str, str, float]] = []

    async def __call__(self, scope: Any, value: str, since: float) -> int:
        self.asked.append((scope, value, since))
        return self.spent.get((scope, value), 0)


class Switchable(MemoryCounters):
    """In-process counters that can be 'down', as Redis can."""

    def __init__(self, clock: Clock):
        super().__init__(clock)
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise CountersUnavailable("connection refused")

    async def admit(self, request_id: str, rates: Sequence[Rate], holds: Sequence[Hold],
                    lease_s: float) -> Admission:
        self._check()
        return await super().admit(request_id, rates, holds, lease_s)

    async def settle(self, request_id: str, used: Mapping[str, int], adjust: Sequence[Rate],
                     periods: Mapping[str, float] | None = None, *, once: bool = False,
                     ) -> tuple[str, ...]:
        self._check()
        return await super().settle(request_id, used, adjust, periods, once=once)

    async def seed(self, name: str, used: int, resets_at: float, epoch: str | None = None,
                   ) -> bool:
        self._check()
        return await super().seed(name, used, resets_at, epoch)

    async def epoch(self, replica: str, known: str, gate_s: float, join_s: float) -> Epoch:
        self._check()
        return await super().epoch(replica, known, gate_s, join_s)

    async def rejoin(self, replica: str, epoch: str, holds: Mapping[str, Sequence[Hold]],
                     lease_s: float, *, done: bool = True) -> bool:
        self._check()
        return await super().rejoin(replica, epoch, holds, lease_s, done=done)

    async def pools(self, prefix: str) -> dict[str, PoolReading]:
        self._check()
        return await super().pools(prefix)

    async def ping(self) -> None:
        self._check()


def key(**limits: Any) -> KeyRecord:
    return KeyRecord(id="k1", name="prod-search-api", key_hash="h", env="prod", team="search",
                     limits=Limits(**limits))


def limiter(counters: MemoryCounters | None = None, clock: Clock | None = None,
            ledger: Ledger | None = None, shared: bool = False, **config: Any) -> Limiter:
    clock = clock or Clock()
    return Limiter(counters or MemoryCounters(clock), LimitsConfig(**config),
                   ledger or Ledger(), shared=shared, clock=clock)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_format_reset_matches_openai():
    assert [format_reset(s) for s in (0, 0.02, 0.9999, 1, 1.2, 59.5, 60, 361, 3723)] == \
        ["0s", "20ms", "1000ms", "1s", "2s", "1m0s", "1m0s", "6m1s", "1h2m3s"]


def test_period_bounds_follow_the_time_zone():
    berlin = ZoneInfo("Europe/Berlin")
    # 23:30 UTC on Nov 30 is already Dec 1 in Berlin.
    now = datetime(2026, 11, 30, 23, 30, tzinfo=ZoneInfo("UTC")).timestamp()
    label, start, end = period_bounds(now, "month", berlin)
    assert label == "2026-12"
    assert datetime.fromtimestamp(start, berlin).isoformat() == "2026-12-01T00:00:00+01:00"
    assert datetime.fromtimestamp(end, berlin).isoformat() == "2027-01-01T00:00:00+01:00"
    label, start, end = period_bounds(now, "day", berlin)
    assert (label, end - start) == ("2026-12-01", 86_400)
    # A day with a DST change is 23 hours long and still ends at midnight.
    spring = datetime(2027, 3, 28, 12, tzinfo=berlin).timestamp()
    label, start, end = period_bounds(spring, "day", berlin)
    assert (label, end - start) == ("2027-03-28", 23 * 3600)


def test_scopes_are_key_team_and_environment():
    lim = limiter(environments={"prod": {"rpm": 1000}, "dev": {"rpm": 5}})
    team = TeamRecord(name="search", limits=Limits(rpm=100))
    scopes = lim.scopes(key(rpm=10), team)
    assert [(s.kind, s.value, s.limits.rpm) for s in scopes] == \
        [("key", "k1", 10), ("team", "search", 100), ("env", "prod", 1000)]
    # A team without limits adds nothing to check.
    assert [s.kind for s in lim.scopes(key(), TeamRecord(name="search"))] == ["key", "env"]


def test_the_tightest_scope_refuses_and_the_headers_show_it():
    clock = Clock()
    lim = limiter(clock=clock, environments={"prod": {"rpm": 1000}})
    scopes = lim.scopes(key(), TeamRecord(name="search", limits=Limits(rpm=2)))

    async def body() -> None:
        first = await lim.admit("r1", scopes, 0, Decimal(0))
        headers = dict(lim.headers(first))
        assert headers == {b"x-ratelimit-limit-requests": b"2",
                           b"x-ratelimit-remaining-requests": b"1",
                           b"x-ratelimit-reset-requests": b"30s"}
        await lim.admit("r2", scopes, 0, Decimal(0))
        with pytest.raises(RateLimited) as refused:
            await lim.admit("r3", scopes, 0, Decimal(0))
        error = refused.value
        assert error.status == 429 and error.code == "rate_limit_exceeded"
        assert "team search: 2 requests per minute" in error.message
        sent = dict(error.headers())
        assert sent[b"retry-after"] == b"30" and sent[b"retry-after-ms"] == b"30000"
        assert sent[b"x-ratelimit-remaining-requests"] == b"0"
        clock.now += 30  # GCRA: one request back per interval, exactly
        await lim.admit("r4", scopes, 0, Decimal(0))

    run(body())


def test_token_limits_charge_the_estimate_and_settle_to_real_usage():
    clock = Clock()
    lim = limiter(clock=clock)
    scopes = lim.scopes(key(tpm=1000), None)

    async def body() -> None:
        ticket = await lim.admit("r1", scopes, 900, Decimal(0))
        assert dict(lim.headers(ticket))[b"x-ratelimit-remaining-tokens"] == b"100"
        with pytest.raises(RateLimited):
            await lim.admit("r2", scopes, 200, Decimal(0))
        await lim.settle(ticket, 150, Decimal(0))  # it really used 150
        ticket = await lim.admit("r3", scopes, 800, Decimal(0))
        assert dict(lim.headers(ticket))[b"x-ratelimit-remaining-tokens"] == b"50"

    run(body())


def test_a_request_larger_than_the_token_limit_is_told_not_to_retry():
    lim = limiter()

    async def body() -> None:
        with pytest.raises(RateLimited) as refused:
            await lim.admit("r1", lim.scopes(key(tpm=100), None), 500, Decimal(0))
        assert "needs about 500 tokens" in refused.value.message
        assert (b"x-should-retry", b"false") in refused.value.headers()

    run(body())


def test_concurrency_limit_frees_a_slot_when_a_request_ends():
    lim = limiter()
    scopes = lim.scopes(key(max_parallel=2), None)

    async def body() -> None:
        first = await lim.admit("r1", scopes, 0, Decimal(0))
        await lim.admit("r2", scopes, 0, Decimal(0))
        with pytest.raises(RateLimited) as refused:
            await lim.admit("r3", scopes, 0, Decimal(0))
        assert refused.value.code == "concurrency_limit_exceeded"
        assert "key prod-search-api (k1): at most 2 requests at once" in refused.value.message
        await lim.settle(first, None, Decimal(0))
        await lim.admit("r3", scopes, 0, Decimal(0))

    run(body())


def test_budget_reserves_the_worst_case_and_settles_to_the_real_cost():
    lim = limiter()
    scopes = lim.scopes(key(budget_usd=Decimal("1.00"), budget_period="day"), None)

    async def body() -> None:
        a = await lim.admit("a", scopes, 0, Decimal("0.40"))
        b = await lim.admit("b", scopes, 0, Decimal("0.40"))
        # 0.80 is held: a third worst case of 0.40 does not fit, though nothing is spent yet.
        with pytest.raises(BudgetExceeded) as refused:
            await lim.admit("c", scopes, 0, Decimal("0.40"))
        error = refused.value
        assert error.status == 429 and error.code == "budget_exceeded"
        assert error.type == "insufficient_quota"
        assert "The daily budget of $1.000000 for key prod-search-api (k1)" in error.message
        assert "$0.800000 held" in error.message
        assert "resets at 2026-11-24T00:00+00:00 (UTC)" in error.message
        headers = dict(error.headers())
        assert headers[b"x-should-retry"] == b"false"
        assert headers[b"retry-after"] == str(12 * 3600).encode()
        await lim.settle(a, 10, Decimal("0.05"))
        await lim.settle(b, 10, Decimal("0.05"))
        c = await lim.admit("c", scopes, 0, Decimal("0.40"))
        await lim.settle(c, 10, Decimal("0.92"))  # more than reserved: the spend is real
        with pytest.raises(BudgetExceeded):
            await lim.admit("d", scopes, 0, Decimal("0.01"))
        pools = await lim.counters.pools("pool:budget:")
        assert pools == {"pool:budget:key:k1:2026-11-23": PoolReading(1_020_000_000, 0, 0)}

    run(body())


def test_a_spent_budget_refuses_requests_of_unknown_price_too():
    lim = limiter()
    scopes = lim.scopes(key(budget_usd=Decimal("0.10")), None)

    async def body() -> None:
        ticket = await lim.admit("a", scopes, 0, Decimal(0))  # unknown price: holds nothing
        await lim.settle(ticket, 10, Decimal("0.10"))
        with pytest.raises(BudgetExceeded):
            await lim.admit("b", scopes, 0, Decimal(0))

    run(body())


def test_budgets_are_seeded_from_the_ledger_once_per_period():
    clock = Clock()
    ledger = Ledger({("team", "search"): 700_000_000})
    lim = limiter(clock=clock, ledger=ledger)
    scopes = lim.scopes(key(), TeamRecord(name="search",
                                          limits=Limits(budget_usd=Decimal("1"))))

    async def body() -> None:
        await lim.admit("a", scopes, 0, Decimal("0.2"))
        with pytest.raises(BudgetExceeded) as refused:
            await lim.admit("b", scopes, 0, Decimal("0.2"))
        assert "The monthly budget of $1.000000 for team search" in refused.value.message
        assert "$0.700000 spent" in refused.value.message
        month_start = datetime(2026, 11, 1, tzinfo=ZoneInfo("UTC")).timestamp()
        assert ledger.asked == [("team", "search", month_start)]
        clock.now = datetime(2026, 12, 1, 0, 0, 1, tzinfo=ZoneInfo("UTC")).timestamp()
        ledger.spent = {}
        await lim.admit("c", scopes, 0, Decimal("0.9"))  # a new month, a new pool
        assert len(ledger.asked) == 2

    run(body())


def test_leases_of_a_dead_request_are_reclaimed_and_live_ones_renewed():
    clock = Clock()
    counters = MemoryCounters(clock)
    lim = limiter(counters, clock, lease_s=3)
    scopes = lim.scopes(key(max_parallel=1), None)

    async def body() -> None:
        await lim.admit("live", scopes, 0, Decimal(0))
        for _ in range(5):  # 10 s: the lease is renewed, the slot stays taken
            clock.now += 2
            await lim._maintain_once()
        with pytest.raises(RateLimited):
            await lim.admit("other", scopes, 0, Decimal(0))
        lim._active.clear()  # as if this replica died: nobody renews any more
        clock.now += 3
        await lim.admit("other", scopes, 0, Decimal(0))

    run(body())


def test_redis_down_fails_budgets_closed_by_default():
    clock = Clock()
    counters = Switchable(clock)
    lim = limiter(counters, clock, shared=True)
    budget = lim.scopes(key(budget_usd=Decimal("5")), None)
    rated = lim.scopes(key(rpm=10), None)

    async def body() -> None:
        counters.down = True
        with pytest.raises(LimitsUnavailable) as refused:
            await lim.admit("a", budget, 0, Decimal("0.1"))
        assert refused.value.status == 503 and refused.value.code == "limits_unavailable"
        assert not lim.healthy
        # Rates fail open by default: admitted on this replica's own counters.
        await lim.admit("b", rated, 0, Decimal(0))
        assert lim.status()["fallback_admits"] == 1

    run(body())


def test_fail_open_divides_limits_by_the_replica_count():
    clock = Clock()
    counters = Switchable(clock)
    ledger = Ledger({("key", "k1"): 400_000_000})
    lim = limiter(counters, clock, ledger, shared=True, replicas=3,
                  on_redis_outage_budgets="open")
    scopes = lim.scopes(key(rpm=9, budget_usd=Decimal("1.00")), None)

    async def body() -> None:
        counters.down = True
        tickets = [await lim.admit(f"r{i}", scopes, 0, Decimal("0.05")) for i in range(3)]
        with pytest.raises(RateLimited):  # 9 rpm / 3 replicas
            await lim.admit("r3", scopes, 0, Decimal(0))
        for ticket in tickets:
            await lim.settle(ticket, 1, Decimal("0.05"))
        clock.now += 60
        # The budget: 0.60 left of 1.00, this replica's share is 0.20, of which 0.15 is spent.
        await lim.admit("r4", scopes, 0, Decimal("0.05"))
        with pytest.raises(BudgetExceeded):
            await lim.admit("r5", scopes, 0, Decimal("0.01"))

    run(body())


def test_settlements_made_while_redis_was_down_reach_it_when_it_is_back():
    clock = Clock()
    counters = Switchable(clock)
    lim = limiter(counters, clock, shared=True, on_redis_outage_budgets="open")
    scopes = lim.scopes(key(budget_usd=Decimal("1.00")), None)

    async def body() -> None:
        ticket = await lim.admit("a", scopes, 0, Decimal("0.1"))  # admitted by Redis
        counters.down = True
        await lim.settle(ticket, 5, Decimal("0.07"))  # cannot reach it: queued
        assert lim.status()["pending_settlements"] == 1
        ticket = await lim.admit("b", scopes, 0, Decimal("0.1"))  # on the fallback
        await lim.settle(ticket, 5, Decimal("0.02"))
        counters.down = False
        await lim._maintain_once()  # probe finds Redis back, then replays
        assert lim.healthy and lim.status()["pending_settlements"] == 0
        pools = await counters.pools("pool:budget:")
        assert [p.used for p in pools.values()] == [90_000_000]

    run(body())


def test_no_limits_means_only_the_in_flight_gauge():
    lim = limiter()

    async def body() -> None:
        ticket = await lim.admit("a", lim.scopes(key(), None), 0, Decimal(0))
        assert lim.headers(ticket) == []
        assert ticket.holds == ("pool:inflight:key:k1",)
        assert (await lim.counters.pools("pool:inflight:"))["pool:inflight:key:k1"].holders == 1
        await lim.settle(ticket, None, Decimal(0))
        assert await lim.counters.pools("pool:inflight:") == {}

    run(body())


@pytest.mark.parametrize("text", [
    "Say hello", "日本語のテキストを数える", "emoji 🎉🎉🎉 and code: def f(x): return x**2",
    "a" * 5000, " ".join(["token"] * 800),
])
def test_the_prompt_bound_is_never_below_the_real_count(text):
    import json as jsonlib

    from keystead.pipeline.settle import prompt_tokens_bounds
    from keystead.usage.tokens import count_chat_prompt

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]
    body = jsonlib.dumps({"model": "gpt-4o-mini", "messages": messages},
                         ensure_ascii=False).encode()
    estimate, bound = prompt_tokens_bounds(body)
    real = count_chat_prompt(messages, "gpt-4o-mini")
    assert bound >= real
    assert estimate <= bound


def test_images_by_url_get_an_allowance():
    from keystead.pipeline.settle import prompt_tokens_bounds

    body = (b'{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"image_url",'
            b'"image_url":{"url":"https://x.example/a.png"}}]}]}')
    plain = prompt_tokens_bounds(body.replace(b'"image_url"', b'"image_uri"'))
    assert prompt_tokens_bounds(body)[1] - plain[1] == 1600
    responses = (b'{"model":"gpt-4o","input":[{"role":"user","content":[{"type":"input_image",'
                 b'"image_url": "https://x.example/a.png"}, {"type":"input_image",'
                 b'"image_url":"data:..."}]}]}')
    assert prompt_tokens_bounds(responses)[1] == len(responses) + 2 * 1600


def test_while_redis_is_down_the_fallbacks_leases_are_renewed():
    clock = Clock()
    counters = Switchable(clock)
    lim = limiter(counters, clock, shared=True, lease_s=3)
    scopes = lim.scopes(key(max_parallel=1), None)

    async def body() -> None:
        counters.down = True
        await lim.admit("a", scopes, 0, Decimal(0))  # a long stream, on the fallback
        for _ in range(10):  # 20 s of outage: the probe fails every time
            clock.now += 2
            await lim._maintain_once()
        with pytest.raises(RateLimited):  # its slot is still held
            await lim.admit("b", scopes, 0, Decimal(0))

    run(body())


def test_each_outage_starts_from_the_ledger_not_from_the_last_outage():
    clock = Clock()
    counters = Switchable(clock)
    ledger = Ledger()
    lim = limiter(counters, clock, ledger, shared=True, on_redis_outage_budgets="open")
    scopes = lim.scopes(key(budget_usd=Decimal("1.00")), None)

    async def body() -> None:
        counters.down = True  # outage 1, early in the period
        await lim.settle(await lim.admit("a", scopes, 0, Decimal("0.01")), 1, Decimal("0.01"))
        counters.down = False
        await lim._maintain_once()
        ledger.spent = {("key", "k1"): 960_000_000}  # then $0.95 more was spent through Redis
        counters.down = True  # outage 2: seeded afresh from the ledger, $0.04 left
        await lim.admit("b", scopes, 0, Decimal("0.03"))
        with pytest.raises(BudgetExceeded):
            await lim.admit("c", scopes, 0, Decimal("0.03"))

    run(body())


def test_only_budget_settlements_wait_for_redis():
    clock = Clock()
    counters = Switchable(clock)
    lim = limiter(counters, clock, shared=True)
    rated = lim.scopes(key(rpm=1000), None)

    async def body() -> None:
        counters.down = True
        for i in range(5):
            await lim.settle(await lim.admit(f"r{i}", rated, 0, Decimal(0)), 1, Decimal(0))
        assert lim.status()["pending_settlements"] == 0

    run(body())


# --- counts and costs that no limit can count ----------------------------------------------


def test_a_negative_token_count_or_cost_is_refused_and_charges_nothing():
    """Regression (issue 13): `max_tokens: -1000000000` made the token charge negative (a
    credit that later locked the team out for a week) and the budget hold negative."""
    lim = limiter()
    scopes = lim.scopes(key(tpm=1000, budget_usd=Decimal("0.10"), budget_period="day"), None)

    async def body() -> None:
        with pytest.raises(InvalidField) as refused:
            await lim.admit("a", scopes, 20 - 1_000_000_000, Decimal("0.01"))
        assert refused.value.status == 400 and refused.value.code == "invalid_value"
        assert "must be positive" in refused.value.message
        with pytest.raises(InvalidField):
            await lim.admit("a", scopes, 20, Decimal("-150"))
        with pytest.raises(InvalidField):
            await lim.admit("a", scopes, 20, Decimal("NaN"))
        assert await lim.counters.pools("") == {}
        ticket = await lim.admit("b", scopes, 1000, Decimal("0.10"))  # all of both, intact
        assert dict(lim.headers(ticket))[b"x-ratelimit-remaining-tokens"] == b"0"

    run(body())


def test_a_settlement_never_credits_a_budget_or_a_rate(caplog):
    clock = Clock()
    lim = limiter(clock=clock)
    scopes = lim.scopes(key(tpm=1000, budget_usd=Decimal("1.00"), budget_period="day"), None)

    async def body() -> None:
        spent = await lim.admit("a", scopes, 100, Decimal("0.10"))
        await lim.settle(spent, 100, Decimal("0.10"))
        ticket = await lim.admit("b", scopes, 100, Decimal("0.10"))
        await lim.settle(ticket, -1_000_000_000, Decimal("-5"))  # a provider's nonsense
        pools = await lim.counters.pools("pool:budget:")
        assert [p.used for p in pools.values()] == [100_000_000]  # not credited
        # The rate gave back b's estimate and no more: 100 of the 1000 stay charged.
        third = await lim.admit("c", scopes, 1, Decimal(0))
        assert dict(lim.headers(third))[b"x-ratelimit-remaining-tokens"] == b"899"

    run(body())
    assert "the cost of request b is -5 USD: counted as 0" in caplog.text
    assert "the tokens used by request b are -1000000000: counted as 0" in caplog.text


def test_huge_counts_are_refused_by_the_limits_not_by_an_overflow():
    lim = limiter()
    rated = lim.scopes(key(tpm=1000), None)
    budgeted = lim.scopes(key(budget_usd=Decimal("1.00"), budget_period="day"), None)

    async def body() -> None:
        with pytest.raises(RateLimited) as refused:
            await lim.admit("a", rated, 10**30, Decimal(0))
        assert (b"x-should-retry", b"false") in refused.value.headers()
        with pytest.raises(BudgetExceeded):
            await lim.admit("b", budgeted, 10, Decimal(10) ** 30)

    run(body())


# --- the ledger or the counters out of reach ----------------------------------------------


class DownLedger(Ledger):
    async def __call__(self, scope: Any, value: str, since: float) -> int:
        raise ConnectionRefusedError("connect call failed ('127.0.0.1', 5432)")


@pytest.mark.parametrize("shared", [False, True])
def test_a_budget_that_needs_its_seed_while_the_database_is_down_is_a_503(shared):
    """Regression (issue 13): PostgreSQL down and a budget to seed answered 500."""
    lim = limiter(ledger=DownLedger(), shared=shared)
    budget = lim.scopes(key(budget_usd=Decimal("5")), None)
    rated = lim.scopes(key(rpm=10), None)

    async def body() -> None:
        with pytest.raises(LimitsUnavailable) as refused:
            await lim.admit("a", budget, 0, Decimal("0.1"))
        error = refused.value
        assert error.status == 503 and error.code == "limits_unavailable"
        assert "budget of key prod-search-api (k1) cannot be counted now" in error.message
        assert "docs/scaling.md" in error.message
        assert (b"retry-after", b"1") in error.headers()
        await lim.admit("b", rated, 0, Decimal(0))  # no budget, no ledger: unaffected

    run(body())


class LostReply(MemoryCounters):
    """Applies a settlement, then its answer is lost (a timeout), once."""

    def __init__(self, clock: Clock):
        super().__init__(clock)
        self.lose_next = False

    async def settle(self, request_id: str, used: Mapping[str, int], adjust: Sequence[Rate],
                     periods: Mapping[str, float] | None = None, *, once: bool = False,
                     ) -> tuple[str, ...]:
        result = await super().settle(request_id, used, adjust, periods, once=once)
        if self.lose_next:
            self.lose_next = False
            raise CountersUnavailable("Redis: Timeout reading from socket")
        return result


def test_a_replayed_settlement_that_redis_applied_counts_once():
    clock = Clock()
    counters = LostReply(clock)
    lim = limiter(counters, clock, shared=True)
    scopes = lim.scopes(key(tpm=1000, budget_usd=Decimal("1.00")), None)

    async def body() -> None:
        ticket = await lim.admit("a", scopes, 500, Decimal("0.10"))
        counters.lose_next = True
        await lim.settle(ticket, 100, Decimal("0.07"))
        assert lim.status()["pending_settlements"] == 1 and not lim.healthy
        await lim._maintain_once()  # Redis answers again: the replay is applied once
        assert lim.healthy and lim.status()["pending_settlements"] == 0
        pools = await counters.pools("pool:budget:")
        assert [p.used for p in pools.values()] == [70_000_000]
        rate = await lim.admit("b", scopes, 1, Decimal(0))
        assert dict(lim.headers(rate))[b"x-ratelimit-remaining-tokens"] == b"899"

    run(body())


def test_a_settlement_whose_answer_redis_lost_counts_once_and_the_counter_equals_the_ledger():
    """Regression (issue 13): after a Redis freeze the budget counter drifted above the ledger
    (a settlement applied, its answer lost, then replayed). Real Redis, through a proxy whose
    answers stop while the commands still run."""
    require_redis()
    settled: list[Decimal] = []  # the ledger: what each request cost

    async def body() -> None:
        async with RedisProxy() as proxy, redis_counters(
                url=proxy.url, timeout_s=0.3, connect_timeout_s=0.3) as counters:
            lim = Limiter(counters, LimitsConfig(), Ledger(), shared=True)
            scopes = lim.scopes(key(budget_usd=Decimal("1.00"), budget_period="day"), None)
            for n, cost in enumerate((Decimal("0.07"), Decimal("0.05"), Decimal("0.11"))):
                ticket = await lim.admit(f"r{n}", scopes, 0, Decimal("0.2"))
                if n == 1:
                    proxy.freeze(replies=True)  # Redis settles it; the answer never comes
                await lim.settle(ticket, 10, cost)
                settled.append(cost)
                if n == 1:
                    assert not lim.healthy and lim.status()["pending_settlements"] == 1
                    await lim._maintain_once()  # a new connection answers: replayed
                    assert lim.healthy and lim.status()["pending_settlements"] == 0
            pools = await counters.pools("pool:budget:")
            assert [p.used for p in pools.values()] == [int(sum(settled) * 10**9)]

    run(body())


# --- Redis losing its data --------------------------------------------------------------------


class Lossy:
    """Counters shared by the replicas that can lose all their data (FLUSHDB, a restart
    without persistence) or be out of reach, as Redis can."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.inner = MemoryCounters(clock)
        self.down = False

    def lose(self) -> None:
        self.inner = MemoryCounters(self.clock)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise CountersUnavailable("connection refused")
            return await method(*args, **kwargs)

        return call


class SharedLedger:
    """The ledger of every replica: rows in it, and each replica's rows still queued."""

    def __init__(self) -> None:
        self.rows: list[int] = []

    async def spend(self, scope: Any, value: str, since: float) -> int:
        return sum(self.rows)


class Replica:
    """A limiter with its own ledger queue, as a gateway has: the data plane queues a row
    right after the settlement returns, and the writer writes it later (`sync`)."""

    def __init__(self, counters: Lossy, clock: Clock, ledger: SharedLedger):
        self.lim = Limiter(counters, LimitsConfig(lease_s=3), ledger.spend,  # type: ignore
                           shared=True, clock=clock)
        self.lim.ledger_sync = self.sync
        self.ledger = ledger
        self.queue: list[int] = []
        self.scopes = self.lim.scopes(key(budget_usd=Decimal("1.00"), budget_period="day"),
                                      None)

    async def admit(self, request_id: str, worst: str) -> Any:
        return await self.lim.admit(request_id, self.scopes, 0, Decimal(worst))

    async def settle(self, ticket: Any, cost: str) -> None:
        await self.lim.settle(ticket, 1, Decimal(cost))
        self.queue.append(int(Decimal(cost) * 10**9))

    async def sync(self) -> None:
        self.ledger.rows += self.queue
        self.queue.clear()


async def seconds_pass(clock: Clock, n: int, *replicas: Replica) -> None:
    """`n` seconds of the replicas' maintenance: leases renewed, Redis checked."""
    for _ in range(n):
        clock.now += 1
        for replica in replicas:
            await replica.lim._maintain_once()


def cluster() -> tuple[Clock, Lossy, SharedLedger, Replica, Replica]:
    clock = Clock()
    counters = Lossy(clock)
    ledger = SharedLedger()
    return clock, counters, ledger, Replica(counters, clock, ledger), \
        Replica(counters, clock, ledger)


async def used(counters: Lossy) -> int:
    return sum(p.used for p in (await counters.pools("pool:budget:")).values())


async def admitted(replica: Replica, request_id: str, worst: str) -> bool:
    try:
        await replica.admit(request_id, worst)
    except BudgetExceeded:
        return False
    return True


def test_after_a_loss_of_data_the_budget_counts_every_replicas_holds_and_unwritten_rows():
    """Regression (issue 13): the seed after a FLUSHDB missed each replica's unwritten ledger
    rows and every reservation in flight, and the budget was overspent."""
    clock, counters, ledger, a, b = cluster()

    async def body() -> None:
        await a.lim._maintain_once()
        await b.lim._maintain_once()
        await a.settle(await a.admit("r0", "0.20"), "0.20")  # settled, its row not written
        r1 = await a.admit("r1", "0.30")
        r2 = await b.admit("r2", "0.30")
        counters.lose()
        await b.lim._maintain_once()  # b notices: a new generation, closed for 3 s
        # a's next request waits for the seed; a rejoins on the way (its row, its hold r1).
        waiting = asyncio.create_task(admitted(a, "r3", "0.30"))
        await asyncio.sleep(0.3)
        assert not waiting.done() and ledger.rows == [200_000_000]
        await seconds_pass(clock, 3, a, b)
        assert not await waiting  # 0.20 spent + 0.60 held + 0.30 > 1.00
        assert await admitted(a, "r4", "0.19")
        assert await counters.pools("pool:budget:") == {
            "pool:budget:key:k1:2026-11-23": PoolReading(200_000_000, 790_000_000, 3)}
        await a.settle(r1, "0.25")
        await b.settle(r2, "0.30")
        await a.sync()
        await b.sync()
        assert await used(counters) == sum(ledger.rows) == 750_000_000

    run(body())


def test_a_settlement_whose_budget_lost_its_total_lands_after_the_seed_exactly_once():
    clock, counters, ledger, a, b = cluster()

    async def body() -> None:
        await a.lim._maintain_once()
        await b.lim._maintain_once()
        r1 = await b.admit("r1", "0.30")
        counters.lose()
        await a.lim._maintain_once()  # a notices first: closed for 3 s
        settling = asyncio.create_task(b.settle(r1, "0.25"))  # b notices when it settles
        await asyncio.sleep(0.3)
        assert not settling.done()  # its money must land in a seeded total, not nowhere
        assert await counters.pools("pool:budget:") == {
            "pool:budget:key:k1:2026-11-23": PoolReading(0, 300_000_000, 1)}
        await seconds_pass(clock, 3, a, b)
        await settling
        await b.sync()
        assert await used(counters) == sum(ledger.rows) == 250_000_000

    run(body())


def test_settlements_queued_when_redis_lost_its_data_are_dropped_the_ledger_holds_them():
    clock, counters, ledger, a, _b = cluster()

    async def body() -> None:
        await a.lim._maintain_once()
        r1 = await a.admit("r1", "0.30")
        counters.down = True  # Redis goes away with r1's settlement...
        await a.settle(r1, "0.25")
        assert a.lim.status()["pending_settlements"] == 1
        counters.lose()  # ...and comes back empty
        counters.down = False
        await a.lim._maintain_once()  # rejoins: the row is written, the settlement dropped
        assert a.lim.healthy and a.lim.status()["pending_settlements"] == 0
        assert ledger.rows == [250_000_000]
        await seconds_pass(clock, 3, a)
        assert await admitted(a, "r2", "0.75")
        assert not await admitted(a, "r3", "0.01")
        assert await used(counters) == 250_000_000

    run(body())


def test_a_replica_starting_on_empty_counters_does_not_wait():
    _clock, _counters, ledger, a, _b = cluster()

    async def body() -> None:
        ledger.rows.append(400_000_000)
        assert await admitted(a, "r1", "0.60")
        assert not await admitted(a, "r2", "0.01")

    run(body())


def test_a_replica_that_cannot_write_its_ledger_keeps_budgets_closed_and_its_holds_counted():
    clock, counters, _ledger, a, b = cluster()

    async def failing_sync() -> None:
        raise ConnectionRefusedError("[Errno 111] Connect call failed ('127.0.0.1', 5432)")

    async def body() -> None:
        await a.lim._maintain_once()
        await b.lim._maintain_once()
        await a.admit("r1", "0.30")
        counters.lose()
        a.lim.ledger_sync = failing_sync  # a's database is out of reach
        with pytest.raises(LimitsUnavailable, match="cannot write its usage ledger"):
            await a.lim._maintain_once()
        await b.lim._maintain_once()
        # a's reservation is back although it could not join; nobody may seed yet.
        assert await counters.pools("pool:budget:") == {
            "pool:budget:key:k1:2026-11-23": PoolReading(0, 300_000_000, 1)}
        clock.now += 2.9
        state = await b.lim._rejoin.check()  # type: ignore[union-attr]
        assert (state.joining, state.ready) == (1, False)  # a, for lease_s at most

    run(body())
