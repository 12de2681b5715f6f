"""Limit: rate limits, concurrency caps and budget reservations (P9, P10), in one counters call.

For every scope that applies to a request (its key, its team, its environment) the limiter turns
the scope's `Limits` into GCRA rates and pool holds, and asks the counters to admit them all at
once. Token rates and budgets are charged with the request's worst case (prompt counted offline
+ max_tokens) and settled to the real usage when the request ends, so concurrent requests can
never together spend past a budget.

When the shared counters (Redis) cannot be reached, the configured choice applies: refuse
(503 limits_unavailable) or fall back to this replica's own counters with every limit divided by
the replica count. Settlements that could not reach Redis are replayed when it is back; each is
applied once (a replay after a timeout that Redis did apply changes nothing). When Redis lost its
data, budgets are seeded again only once every replica rejoined (`pipeline/rejoin.py`).

Counts and costs are checked here too, whatever the data plane validated: a negative or
non-finite token count or worst case refuses the request (400 invalid_value: it has no known
worst case, and admitting it uncharged would open the wall); at settlement, where refusing is
too late, a negative one counts as 0 and a huge one is capped. A charge never credits a budget
or a rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Literal, cast
from zoneinfo import ZoneInfo

from keystead.config.model import LimitsConfig
from keystead.errors import InvalidField, LimitsUnavailable
from keystead.keys.tokens import TokenClaims
from keystead.pipeline.limit_refusals import format_reset, ratelimit_headers, refuse
from keystead.pipeline.limit_rules import (
    NANO_PER_USD,
    BudgetRule,
    Pending,
    Scope,
    Ticket,
    period_bounds,
    scaled,
)
from keystead.pipeline.rejoin import Rejoin
from keystead.state.counters import Counters, CountersUnavailable, Hold, Rate
from keystead.state.memory_counters import MemoryCounters
from keystead.state.outage import OutageLog
from keystead.state.records import KeyRecord, Limits, TeamRecord
from keystead.state.store import SpendScope

__all__ = ["Limiter", "Scope", "Ticket", "format_reset", "period_bounds", "ratelimit_headers"]

log = logging.getLogger("keystead.limits")

_MAX_PENDING = 100_000
# Counts and nano-dollars past this are capped: floats (and Lua's numbers) are exact below 2**53,
# and nothing real comes near (2**53 nano-dollars is $9M; no limit counts that many tokens).
_MAX_COUNT = 2**53
_READY_WAIT_S = 5.0  # an admission waits this long for budgets to be seeded after a data loss


class Limiter:
    def __init__(self, counters: Counters, config: LimitsConfig,
                 spend: Callable[[SpendScope, str, float], Awaitable[int]], *,
                 shared: bool, clock: Callable[[], float] = time.time):
        self.counters = counters
        self.config = config
        self._spend = spend  # exact spend of a scope since a time, from the ledger
        self._shared = shared  # counters shared by replicas (Redis): outages are possible
        self._clock = clock
        self._zone = ZoneInfo(config.timezone)
        self._env_limits = {env: Limits.from_dict(values.model_dump())
                            for env, values in config.environments.items()}
        self._scopes: dict[str, tuple[KeyRecord, TeamRecord | None, list[Scope]]] = {}
        self._periods: dict[str, tuple[str, float, float]] = {}
        self._token_scopes: dict[str, Scope] = {}
        self._fallback = MemoryCounters(clock)
        self._down_since: float | None = None
        self._active: dict[str, Ticket] = {}
        self._pending: deque[Pending] = deque()
        self._pending_seq = 0  # the sequence number of the next settlement queued
        self._drop_below = 0  # queued settlements before this one were dropped by a rejoin
        self._task: asyncio.Task[None] | None = None
        self._interval = min(1.0, config.lease_s / 3)  # of lease renewals and Redis checks
        self._rejoin = Rejoin(counters, lease_s=config.lease_s, interval_s=self._interval,
                              holds=self._holds_on_shared, joined=self._drop_queued,
                              cutoff=lambda: self._pending_seq) if shared else None
        self._ledger_outage = OutageLog(log, "reading a budget's spend from the ledger")
        self._maintain_outage = OutageLog(log, "limit maintenance")
        self.fallback_admits = 0  # requests admitted by the fallback counters (a metric)
        self.refused_outage = 0  # requests refused because Redis was down (a metric)

    def reconfigure(self, config: LimitsConfig) -> None:
        """A reloaded `limits` section: new requests get the new environment limits, time zone
        and outage policy; requests admitted already settle what they hold (their tickets).
        `lease_s` is kept: the lease renewer runs on it (a restart changes it)."""
        self.config = config.model_copy(update={"lease_s": self.config.lease_s})
        self._zone = ZoneInfo(config.timezone)
        self._env_limits = {env: Limits.from_dict(values.model_dump())
                            for env, values in config.environments.items()}
        self._scopes.clear()
        self._periods.clear()

    @property
    def ledger_sync(self) -> Callable[[], Awaitable[None]] | None:
        """Writes the usage ledger's queue (LedgerWriter.sync): a rejoin needs it."""
        return self._rejoin.ledger_sync if self._rejoin is not None else None

    @ledger_sync.setter
    def ledger_sync(self, sync: Callable[[], Awaitable[None]] | None) -> None:
        if self._rejoin is not None:
            self._rejoin.ledger_sync = sync

    # lifecycle
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._maintain())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._down_since is None:
            await self._replay()
        await self._fallback.close()

    @property
    def healthy(self) -> bool:
        return self._down_since is None

    def status(self) -> dict[str, object]:
        return {"backend": "redis" if self._shared else "memory",
                "healthy": self.healthy, "down_since": self._down_since,
                "fallback_admits": self.fallback_admits, "refused_outage": self.refused_outage,
                "in_flight": len(self._active), "pending_settlements": len(self._pending)}

    # the request path
    def scopes(self, key: KeyRecord, team: TeamRecord | None) -> list[Scope]:
        """The scopes whose limits apply to `key`; cached until the key or its team changes
        (records are replaced, never mutated, so identity tells)."""
        cached = self._scopes.get(key.id)
        if cached is not None and cached[0] is key and cached[1] is team:
            return cached[2]
        scopes = [Scope("key", key.id, f"key {key.name} ({key.id})", key.limits)]
        if team is not None and not team.limits.is_empty():
            scopes.append(Scope("team", team.name, f"team {team.name}", team.limits))
        env = self._env_limits.get(key.env)
        if env is not None and not env.is_empty():
            scopes.append(Scope("env", key.env, f"environment {key.env}", env))
        if len(self._scopes) > 100_000:  # deleted keys' entries: start afresh
            self._scopes.clear()
        self._scopes[key.id] = (key, team, scopes)
        return scopes

    def token_scope(self, claims: TokenClaims) -> Scope | None:
        """The token's own rate limits, on top of its key's (cached for the token's life)."""
        if not (claims.rpm or claims.tpm):
            return None
        scope = self._token_scopes.get(claims.token_id)
        if scope is None:
            if len(self._token_scopes) > 100_000:
                self._token_scopes.clear()
            scope = self._token_scopes[claims.token_id] = Scope(
                "token", claims.token_id, f"token {claims.token_id}",
                Limits(rpm=claims.rpm, tpm=claims.tpm))
        return scope

    @staticmethod
    def needs_tokens(scopes: list[Scope]) -> bool:
        """Whether admitting needs the request's token estimate (token rates or a budget)."""
        return any(s.needs_tokens for s in scopes)

    @staticmethod
    def has_budget(scopes: list[Scope]) -> bool:
        return any(s.budget_capacity is not None for s in scopes)

    async def admit(self, request_id: str, scopes: list[Scope], tokens: int,
                    worst_cost_usd: Decimal) -> Ticket:
        """Admit the request or raise RateLimited / BudgetExceeded / LimitsUnavailable, or
        InvalidField for a negative count or cost (the request has no known worst case)."""
        if tokens < 0:
            raise InvalidField(
                f"This request's size came to {tokens} tokens, which no limit can count.",
                hint="max_tokens (max_completion_tokens, max_output_tokens) and n must be "
                     "positive.")
        if not worst_cost_usd.is_finite() or worst_cost_usd < 0:
            raise InvalidField(
                f"This request's worst-case cost came to ${worst_cost_usd}, which no budget "
                "can count.", hint="max_tokens and n must be positive.")
        tokens = min(tokens, _MAX_COUNT)
        worst = min(_MAX_COUNT, int((worst_cost_usd * NANO_PER_USD).to_integral_value(
            rounding="ROUND_CEILING")))
        if self._down_since is not None:
            return await self._admit_fallback(request_id, scopes, tokens, worst)
        try:
            return await self._admit_on(self.counters, request_id, scopes, tokens, worst)
        except CountersUnavailable as exc:
            self._mark_down(exc)
            return await self._admit_fallback(request_id, scopes, tokens, worst)

    async def settle(self, ticket: Ticket, tokens_used: int | None,
                     cost_usd: Decimal) -> None:
        """Release the holds; settle budgets to the real cost and token rates to real usage.

        The caller queues the request's ledger row right after this returns, with no await in
        between: a rejoin relies on it (rows of settlements on their way are queued when the
        settlement returns). After a loss of Redis's data this may wait for the budget to be
        seeded again (up to `lease_s`; the response went out already)."""
        spent = _nano(cost_usd, ticket.request_id)
        used = dict.fromkeys(ticket.holds, 0)
        for name in ticket.budgets:
            used[name] = spent
        # No usage known (the request failed before the provider answered): nothing was used.
        real = _tokens(tokens_used, ticket.request_id) if tokens_used is not None else 0
        adjust = tuple(rate._replace(cost=real - ticket.estimated_tokens)
                       for rate in ticket.token_rates if real != ticket.estimated_tokens)
        shared = ticket.counters is self.counters and self._shared
        # Applied once: a replay after a timeout that Redis did apply must not count twice.
        once = shared and (bool(adjust) or (spent > 0 and bool(ticket.budgets)))
        try:
            if self._rejoin is None:  # in-process counters: they cannot lose their data
                lost = await ticket.counters.settle(ticket.request_id, used, adjust)
            else:
                lost = await self._settle_on(ticket.counters, ticket.request_id, used, adjust,
                                             ticket.periods, once)
            if lost:
                await self._settle_lost(ticket, lost, used, adjust, once)
        except CountersUnavailable as exc:
            self._mark_down(exc)
            self._queue(ticket.request_id, used, adjust, ticket.periods, once)
            return
        finally:
            self._active.pop(ticket.request_id, None)
        if ticket.counters is not self.counters and ticket.budgets:
            # Spent while Redis was down: the shared budgets must hear of it when it is back.
            self._queue(ticket.request_id, {n: spent for n in ticket.budgets}, (),
                        ticket.periods, self._shared)

    async def _settle_on(self, counters: Counters, request_id: str, used: dict[str, int],
                         adjust: tuple[Rate, ...], periods: Mapping[str, float], once: bool,
                         ) -> tuple[str, ...]:
        if self._rejoin is None or counters is not self.counters:
            return await counters.settle(request_id, used, adjust, periods, once=once)
        with self._rejoin.settling():
            return await counters.settle(request_id, used, adjust, periods, once=once)

    async def _settle_lost(self, ticket: Ticket, lost: tuple[str, ...], used: dict[str, int],
                           adjust: tuple[Rate, ...], once: bool) -> None:
        """The budget lost its total (Redis lost its data): wait until it is seeded again, then
        settle. Its holds stay and are renewed meanwhile; given up after a lease, queued."""
        deadline = time.monotonic() + self.config.lease_s
        try:
            while lost:
                await self._seed(ticket.counters, lost, list(ticket.budget_rules), 1, deadline)
                lost = await self._settle_on(ticket.counters, ticket.request_id, used, adjust,
                                             ticket.periods, once)
        except LimitsUnavailable as exc:
            log.error("settling request %s waits for Redis: %s", ticket.request_id, exc)
            self._queue(ticket.request_id, used, adjust, ticket.periods, once)

    @staticmethod
    def headers(ticket: Ticket | None) -> list[tuple[bytes, bytes]]:
        """OpenAI's x-ratelimit-* headers from the tightest request and token rates."""
        if ticket is None:
            return []
        return ratelimit_headers(ticket.readings, {rate.name for rate in ticket.token_rates})

    # building and asking
    def _period(self, period: Literal["day", "month"], now: float) -> tuple[str, float, float]:
        bounds = self._periods.get(period)
        if bounds is None or not bounds[1] <= now < bounds[2]:
            bounds = self._periods[period] = period_bounds(now, period, self._zone)
        return bounds

    def _rules(self, scopes: list[Scope], tokens: int, worst: int, now: float,
               ) -> tuple[list[Rate], list[Rate], list[Hold], list[BudgetRule]]:
        request_rates: list[Rate] = []
        token_rates: list[Rate] = []
        holds: list[Hold] = []
        budgets: list[BudgetRule] = []
        for scope in scopes:
            request_rates.extend(scope.request_rates)
            for name, limit, window in scope.token_rules:
                token_rates.append(Rate(name, limit, window, tokens))
            if scope.inflight is not None:
                holds.append(scope.inflight)
            if scope.budget_capacity is not None:
                label, start, end = self._period(scope.limits.budget_period, now)
                hold = Hold(scope.budget_prefix + label, scope.budget_capacity, worst, end)
                holds.append(hold)
                budgets.append(BudgetRule(scope, hold, start))
        return request_rates, token_rates, holds, budgets

    async def _admit_on(self, counters: Counters, request_id: str, scopes: list[Scope],
                        tokens: int, worst: int, replicas: int = 1) -> Ticket:
        now = self._clock()
        request_rates, token_rates, holds, budgets = self._rules(scopes, tokens, worst, now)
        lease = self.config.lease_s
        deadline = 0.0  # set when a budget must be seeded: how long to wait for that
        for _attempt in range(3):
            admission = await counters.admit(request_id, request_rates + token_rates, holds,
                                             lease)
            if not admission.unseeded:
                break
            deadline = deadline or time.monotonic() + _READY_WAIT_S
            await self._seed(counters, admission.unseeded, budgets, replicas, deadline)
        if not admission.allowed:
            if admission.unseeded:
                raise LimitsUnavailable("The budget counters could not be prepared.",
                                        hint="Retry in a moment; if it persists, check the "
                                             "store and Redis (see docs/operations.md).")
            refuse(admission, scopes, request_rates, token_rates, budgets, tokens,
                   now=self._clock(), zone=self._zone)
        ticket = Ticket(request_id, counters)
        ticket.holds = tuple(h.name for h in holds)
        ticket.hold_rules = tuple(holds)
        ticket.budgets = tuple(b.hold.name for b in budgets)
        ticket.budget_rules = tuple(budgets)
        ticket.token_rates = tuple(token_rates)
        ticket.estimated_tokens = tokens
        ticket.reserved_nanousd = worst
        ticket.readings = admission.rates
        self._active[request_id] = ticket
        return ticket

    async def _seed(self, counters: Counters, names: tuple[str, ...], budgets: list[BudgetRule],
                    replicas: int, deadline: float) -> None:
        """Seed budgets from the ledger. On the shared counters, only once they may be (after
        a loss of data, every replica rejoined first): waits until then, up to `deadline`."""
        rejoin = self._rejoin if counters is self.counters else None
        for budget in budgets:
            if budget.hold.name not in names:
                continue
            assert budget.hold.resets_at is not None
            while True:
                if rejoin is not None:
                    await rejoin.ready(deadline)
                used = await self._ledger_spend(budget)
                if replicas > 1:
                    # Fail-open: this replica may spend only its share of what is left.
                    left = max(0, budget.hold.capacity - used)
                    used = budget.hold.capacity - left // replicas
                if await counters.seed(budget.hold.name, used, budget.hold.resets_at,
                                       rejoin.known if rejoin is not None else None):
                    break
                assert rejoin is not None  # only a generation's gate refuses a seed
                rejoin.forget()  # the data's generation changed meanwhile: ask again

    async def _ledger_spend(self, budget: BudgetRule) -> int:
        """The scope's exact spend this period, from the ledger; LimitsUnavailable (503, never
        a 500) when the database cannot say."""
        kind = cast(SpendScope, budget.scope.kind)  # budgets are on keys, teams, envs only
        try:
            used = await self._spend(kind, budget.scope.value, budget.period_start)
        except Exception as exc:
            self._ledger_outage.failed(exc)
            raise LimitsUnavailable(
                f"The budget of {budget.scope.label} cannot be counted now: its spend is read "
                "from the usage ledger, and the database does not answer.",
                hint="Retry shortly. Operators: see 'What fails how' in docs/scaling.md.",
            ) from exc
        self._ledger_outage.ok()
        return used

    async def _admit_fallback(self, request_id: str, scopes: list[Scope], tokens: int,
                              worst: int) -> Ticket:
        has_rates = any(s.limits.rpm or s.limits.rpd or s.limits.tpm or s.limits.tpd
                        or s.limits.max_parallel for s in scopes)
        closed = ((self.has_budget(scopes) and self.config.on_redis_outage_budgets == "closed")
                  or (has_rates and self.config.on_redis_outage_rates == "closed"))
        if closed:
            self.refused_outage += 1
            raise LimitsUnavailable(
                "The shared limit counters (Redis) are unreachable, and this gateway is set to "
                "refuse rather than admit requests it cannot count.",
                hint="Retry shortly. Operators: see 'Redis is down' in docs/operations.md.")
        self.fallback_admits += 1
        replicas = self.config.replicas
        local = [Scope(s.kind, s.value, s.label, scaled(s.limits, replicas)) for s in scopes]
        return await self._admit_on(self._fallback, request_id, local, tokens, worst, replicas)

    # outages, leases and replays
    def _mark_down(self, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = self._clock()
            # Fresh fallback counters for every outage: budgets seeded in an earlier outage
            # know nothing of what was spent through Redis since. Tickets of the old one still
            # settle and renew on it (each ticket keeps its counters).
            self._fallback = MemoryCounters(self._clock)
            log.error("shared counters unreachable (%s); limits now %s", exc,
                      f"rates={self.config.on_redis_outage_rates}, "
                      f"budgets={self.config.on_redis_outage_budgets}")

    def _queue(self, request_id: str, used: dict[str, int], adjust: tuple[Rate, ...],
               periods: Mapping[str, float], once: bool) -> None:
        if len(self._pending) >= _MAX_PENDING:
            log.error("dropping a settlement for request %s: %d are waiting for Redis",
                      request_id, len(self._pending))
            return
        self._pending.append(Pending(self._pending_seq, request_id, used, adjust, periods,
                                      once))
        self._pending_seq += 1

    def _drop_queued(self, cutoff: int) -> int:
        """A rejoin wrote the ledger: settlements queued before `cutoff` are in it, and Redis
        lost what they settle. Returns how many are dropped."""
        self._drop_below = max(self._drop_below, cutoff)
        before = len(self._pending)
        while self._pending and self._pending[0].seq < self._drop_below:
            self._pending.popleft()
        return before - len(self._pending)

    def _holds_on_shared(self) -> dict[str, Sequence[Hold]]:
        return {t.request_id: t.hold_rules for t in list(self._active.values())
                if t.counters is self.counters}

    async def _replay(self, limit: int = _MAX_PENDING) -> bool:
        """Deliver queued settlements to Redis; False if it failed again. One whose budget
        lost its total stays queued until the budget is seeded again."""
        for _ in range(min(limit, len(self._pending))):
            entry = self._pending[0]
            if entry.seq >= self._drop_below:
                try:
                    lost = await self._settle_on(self.counters, entry.request_id, entry.used,
                                                 entry.adjust, entry.periods, entry.once)
                except CountersUnavailable as exc:
                    self._mark_down(exc)
                    return False
                if lost:
                    return True
            if self._pending and self._pending[0] is entry:
                self._pending.popleft()
        return True

    async def _maintain(self) -> None:
        """Renew the leases of requests in flight; probe Redis while it is down; notice when
        it lost its data and rejoin."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._maintain_once()
            except Exception as exc:
                self._maintain_outage.failed(exc)
            else:
                self._maintain_outage.ok()

    async def _maintain_once(self) -> None:
        # Leases first (a long replay must not let them run out), on every counters that hold
        # some: the fallback's too, while Redis is down.
        by_counters: dict[int, tuple[Counters, dict[str, list[str]]]] = {}
        for ticket in list(self._active.values()):
            entry = by_counters.setdefault(id(ticket.counters), (ticket.counters, {}))
            entry[1][ticket.request_id] = list(ticket.holds)
        for counters, leases in by_counters.values():
            if counters is self.counters and self._down_since is not None:
                continue
            try:
                await counters.renew(leases, self.config.lease_s)
            except CountersUnavailable as exc:
                self._mark_down(exc)
        if self._down_since is not None:
            try:
                await self.counters.ping()
                # Did Redis lose its data meanwhile (restarted empty)? Rejoin first: what is
                # queued from before is then in the ledger, and dropped.
                if self._rejoin is not None:
                    await self._rejoin.check()
            except CountersUnavailable:
                return
            # Replay before admitting on Redis again, so that a budget seeded from the ledger
            # right after recovery is not then counted twice by the replay.
            if not await self._replay():
                return
            log.warning("shared counters reachable again after %.1fs",
                        self._clock() - self._down_since)
            self._down_since = None
            return
        if self._rejoin is not None:
            try:
                await self._rejoin.check()
            except CountersUnavailable as exc:
                self._mark_down(exc)
                return
        if self._pending:
            await self._replay(limit=1000)


def _nano(cost_usd: Decimal, request_id: str) -> int:
    """A settled cost in nano-dollars: never negative (never a credit), capped."""
    if cost_usd.is_finite() and cost_usd >= 0:
        nano = int((cost_usd * NANO_PER_USD).to_integral_value(rounding="ROUND_CEILING"))
        return nano if nano <= _MAX_COUNT else _MAX_COUNT
    log.error("the cost of request %s is %s USD: counted as 0", request_id, cost_usd)
    return 0


def _tokens(tokens: int, request_id: str) -> int:
    """A settled token count: never negative (never a credit), capped."""
    if 0 <= tokens <= _MAX_COUNT:
        return tokens
    if tokens > _MAX_COUNT:
        return _MAX_COUNT
    log.error("the tokens used by request %s are %s: counted as 0", request_id, tokens)
    return 0
