"""Limit: rate limits, concurrency caps and budget reservations (P9, P10), in one counters call.

For every scope that applies to a request (its key, its team, its environment) the limiter turns
the scope's `Limits` into GCRA rates and pool holds, and asks the counters to admit them all at
once. Token rates and budgets are charged with the request's worst case (prompt counted offline
+ max_tokens) and settled to the real usage when the request ends, so concurrent requests can
never together spend past a budget.

When the shared counters (Redis) cannot be reached, the configured choice applies: refuse
(503 limits_unavailable) or fall back to this replica's own counters with every limit divided by
the replica count. Settlements that could not reach Redis are replayed when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, cast
from zoneinfo import ZoneInfo

from keystead.config.model import LimitsConfig
from keystead.errors import BudgetExceeded, LimitsUnavailable, RateLimited
from keystead.keys.tokens import TokenClaims
from keystead.state.counters import (
    UNLIMITED,
    Admission,
    Counters,
    CountersUnavailable,
    Hold,
    MemoryCounters,
    Rate,
    RateReading,
)
from keystead.state.records import KeyRecord, Limits, TeamRecord
from keystead.state.store import SpendScope

__all__ = ["Limiter", "Scope", "Ticket", "format_reset", "period_bounds", "ratelimit_headers"]

log = logging.getLogger("keystead.limits")

_NANO_PER_USD = Decimal(10) ** 9
_MINUTE, _DAY = 60, 86_400
_MAX_PENDING = 100_000
_PERIOD_WORD = {"day": "daily", "month": "monthly"}
# A token (P7) is a scope of its own for its rates; it never has a budget (its key's applies).
ScopeKind = Literal["key", "team", "env", "token"]


class Scope:
    """One scope's limits, with everything about them that does not change per request
    computed once (the scope is cached until its key or team changes)."""

    __slots__ = ("budget_capacity", "budget_prefix", "inflight", "kind", "label", "limits",
                 "needs_tokens", "request_rates", "token_rules", "value")

    def __init__(self, kind: ScopeKind, value: str, label: str, limits: Limits):
        self.kind = kind
        self.value = value  # key id, team name or environment
        self.label = label  # for people: "key prod-search-api (ab12cd34)", "team search"
        self.limits = limits
        prefix = f"{kind}:{value}"
        self.request_rates = tuple(
            Rate(f"rate:{prefix}:{unit}", limit, window, 1)
            for limit, window, unit in ((limits.rpm, _MINUTE, "rpm"), (limits.rpd, _DAY, "rpd"))
            if limit)
        self.token_rules = tuple(
            (f"rate:{prefix}:{unit}", limit, window)
            for limit, window, unit in ((limits.tpm, _MINUTE, "tpm"), (limits.tpd, _DAY, "tpd"))
            if limit)
        # The key's in-flight pool is always held: it is the status page's gauge too.
        self.inflight = (Hold(f"pool:inflight:{prefix}", limits.max_parallel or UNLIMITED, 1)
                         if kind == "key" or limits.max_parallel else None)
        self.budget_prefix = f"pool:budget:{prefix}:"
        self.budget_capacity = (int(limits.budget_usd * _NANO_PER_USD)
                                if limits.budget_usd is not None else None)
        self.needs_tokens = bool(self.token_rules) or self.budget_capacity is not None


@dataclass(frozen=True, slots=True)
class _Budget:
    scope: Scope
    hold: Hold
    period_start: float


class Ticket:
    """What one admitted request holds, until `Limiter.settle`."""

    __slots__ = ("budgets", "counters", "estimated_tokens", "holds", "readings", "request_id",
                 "reserved_nanousd", "token_rates")

    def __init__(self, request_id: str, counters: Counters):
        self.request_id = request_id
        self.counters = counters  # the counters that admitted it (Redis, or the fallback)
        self.holds: tuple[str, ...] = ()
        self.budgets: tuple[str, ...] = ()
        self.token_rates: tuple[Rate, ...] = ()
        self.estimated_tokens = 0
        self.reserved_nanousd = 0
        self.readings: tuple[RateReading, ...] = ()


def period_bounds(now: float, period: Literal["day", "month"], zone: ZoneInfo
                  ) -> tuple[str, float, float]:
    """(label, start, end) of the budget period containing `now`, in `zone`."""
    local = datetime.fromtimestamp(now, zone)
    if period == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=1, hours=2)).replace(hour=0)  # safe across DST changes
        return start.strftime("%Y-%m-%d"), start.timestamp(), end.timestamp()
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m"), start.timestamp(), end.timestamp()


def format_reset(seconds: float) -> str:
    """OpenAI's reset format: 20ms, 1s, 6m0s, 1h2m3s."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _usd(nanousd: int | Decimal) -> str:
    return format((Decimal(nanousd) / _NANO_PER_USD).quantize(Decimal("0.000001")), "f")


def _scaled(limits: Limits, replicas: int) -> Limits:
    """This replica's share of each limit while the shared counters are down."""
    if replicas <= 1:
        return limits
    share = {name: max(1, value // replicas) for name in ("rpm", "rpd", "tpm", "tpd",
                                                            "max_parallel")
             if (value := getattr(limits, name)) is not None}
    return replace(limits, **share)


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
        self._pending: deque[tuple[str, dict[str, int], tuple[Rate, ...]]] = deque()
        self._task: asyncio.Task[None] | None = None
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
        """Admit the request or raise RateLimited / BudgetExceeded / LimitsUnavailable."""
        worst = int((worst_cost_usd * _NANO_PER_USD).to_integral_value(rounding="ROUND_CEILING"))
        if self._down_since is not None:
            return await self._admit_fallback(request_id, scopes, tokens, worst)
        try:
            return await self._admit_on(self.counters, request_id, scopes, tokens, worst)
        except CountersUnavailable as exc:
            self._mark_down(exc)
            return await self._admit_fallback(request_id, scopes, tokens, worst)

    async def settle(self, ticket: Ticket, tokens_used: int | None,
                     cost_usd: Decimal) -> None:
        """Release the holds; settle budgets to the real cost and token rates to real usage."""
        self._active.pop(ticket.request_id, None)
        spent = int((cost_usd * _NANO_PER_USD).to_integral_value(rounding="ROUND_CEILING"))
        used = dict.fromkeys(ticket.holds, 0)
        for name in ticket.budgets:
            used[name] = spent
        # No usage known (the request failed before the provider answered): nothing was used.
        real = tokens_used if tokens_used is not None else 0
        adjust = tuple(rate._replace(cost=real - ticket.estimated_tokens)
                       for rate in ticket.token_rates if real != ticket.estimated_tokens)
        try:
            await ticket.counters.settle(ticket.request_id, used, adjust)
        except CountersUnavailable as exc:
            self._mark_down(exc)
            self._queue(ticket.request_id, used, adjust)
            return
        if ticket.counters is not self.counters and ticket.budgets:
            # Spent while Redis was down: the shared budgets must hear of it when it is back.
            self._queue(ticket.request_id, {n: spent for n in ticket.budgets}, ())

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
               ) -> tuple[list[Rate], list[Rate], list[Hold], list[_Budget]]:
        request_rates: list[Rate] = []
        token_rates: list[Rate] = []
        holds: list[Hold] = []
        budgets: list[_Budget] = []
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
                budgets.append(_Budget(scope, hold, start))
        return request_rates, token_rates, holds, budgets

    async def _admit_on(self, counters: Counters, request_id: str, scopes: list[Scope],
                        tokens: int, worst: int, replicas: int = 1) -> Ticket:
        now = self._clock()
        request_rates, token_rates, holds, budgets = self._rules(scopes, tokens, worst, now)
        lease = self.config.lease_s
        for _attempt in range(3):
            admission = await counters.admit(request_id, request_rates + token_rates, holds,
                                             lease)
            if not admission.unseeded:
                break
            await self._seed(counters, admission.unseeded, budgets, replicas)
        if not admission.allowed:
            if admission.unseeded:
                raise LimitsUnavailable("The budget counters could not be prepared.",
                                        hint="Retry in a moment; if it persists, check the "
                                             "store and Redis (see docs/operations.md).")
            self._refuse(admission, scopes, request_rates, token_rates, budgets, tokens)
        ticket = Ticket(request_id, counters)
        ticket.holds = tuple(h.name for h in holds)
        ticket.budgets = tuple(b.hold.name for b in budgets)
        ticket.token_rates = tuple(token_rates)
        ticket.estimated_tokens = tokens
        ticket.reserved_nanousd = worst
        ticket.readings = admission.rates
        self._active[request_id] = ticket
        return ticket

    async def _seed(self, counters: Counters, names: tuple[str, ...], budgets: list[_Budget],
                    replicas: int) -> None:
        for budget in budgets:
            if budget.hold.name not in names:
                continue
            kind = cast(SpendScope, budget.scope.kind)  # budgets are on keys, teams, envs only
            used = await self._spend(kind, budget.scope.value, budget.period_start)
            if replicas > 1:
                # Fail-open: this replica may spend only its share of what is left.
                left = max(0, budget.hold.capacity - used)
                used = budget.hold.capacity - left // replicas
            assert budget.hold.resets_at is not None
            await counters.seed(budget.hold.name, used, budget.hold.resets_at)

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
        local = [Scope(s.kind, s.value, s.label, _scaled(s.limits, replicas)) for s in scopes]
        return await self._admit_on(self._fallback, request_id, local, tokens, worst, replicas)

    def _refuse(self, admission: Admission, scopes: list[Scope], request_rates: list[Rate],
                token_rates: list[Rate], budgets: list[_Budget], tokens: int) -> None:
        name = admission.refused_by or ""
        ticket_headers = ratelimit_headers(admission.rates, {r.name for r in token_rates})
        # Names are "rate:<kind>:<value>:<unit>" and "pool:<what>:<kind>:<value>[:<period>]".
        parts = name.split(":")
        where = parts[1:3] if parts[0] == "rate" else parts[2:4]
        scope = next((s for s in scopes if where == [s.kind, s.value]), None)
        label = scope.label if scope else "this key"
        for budget in budgets:
            if budget.hold.name == name:
                pool = admission.pool
                used = pool.used if pool else 0
                reserved = pool.reserved if pool else 0
                limits = budget.scope.limits
                resets_at = budget.hold.resets_at or self._clock()
                reset = datetime.fromtimestamp(resets_at, self._zone).isoformat(timespec="minutes")
                period = _PERIOD_WORD[limits.budget_period]
                raise BudgetExceeded(
                    f"The {period} budget of ${_usd(budget.hold.capacity)} for "
                    f"{label} does not cover this request: ${_usd(used)} spent, "
                    f"${_usd(reserved)} held by requests in flight, this request may cost up to "
                    f"${_usd(budget.hold.amount)}.",
                    hint=f"The budget resets at {reset} ({self.config.timezone}). Ask your "
                         "platform team to raise it, or lower max_tokens.",
                    retry_after_s=max(1.0, resets_at - self._clock()), retry=False,
                    headers=ticket_headers)
        if name.startswith("pool:inflight:"):
            limit = scope.limits.max_parallel if scope else None
            raise RateLimited(
                f"Concurrency limit reached for {label}: at most {limit} requests at once.",
                code="concurrency_limit_exceeded", retry_after_s=1.0,
                hint="Retry when one of the requests in flight has finished.",
                headers=ticket_headers)
        rate = next((r for r in (*request_rates, *token_rates) if r.name == name), None)
        unit = "requests" if rate in request_rates else "tokens"
        window = "minute" if rate is not None and rate.window_s == _MINUTE else "day"
        limit_text = f"{rate.limit} {unit} per {window}" if rate else "its limit"
        if math.isinf(admission.retry_after_s):
            raise RateLimited(
                f"This request needs about {tokens} tokens, more than the {limit_text} allowed "
                f"for {label}.",
                hint="Send a shorter prompt or a lower max_tokens.", retry=False,
                headers=ticket_headers)
        raise RateLimited(
            f"Rate limit reached for {label}: {limit_text}.",
            hint=f"Retry in {admission.retry_after_s:.2f}s; if this is steady traffic, ask your "
                 "platform team to raise the limit.",
            retry_after_s=admission.retry_after_s, headers=ticket_headers)

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

    def _queue(self, request_id: str, used: dict[str, int], adjust: tuple[Rate, ...]) -> None:
        if len(self._pending) >= _MAX_PENDING:
            log.error("dropping a settlement for request %s: %d are waiting for Redis",
                      request_id, len(self._pending))
            return
        self._pending.append((request_id, used, adjust))

    async def _replay(self, limit: int = _MAX_PENDING) -> bool:
        """Deliver queued settlements to Redis; False if it failed again."""
        for _ in range(min(limit, len(self._pending))):
            request_id, used, adjust = self._pending[0]
            try:
                await self.counters.settle(request_id, used, adjust)
            except CountersUnavailable as exc:
                self._mark_down(exc)
                return False
            self._pending.popleft()
        return True

    async def _maintain(self) -> None:
        """Renew the leases of requests in flight; probe Redis while it is down."""
        interval = min(1.0, self.config.lease_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._maintain_once()
            except Exception:
                log.exception("limit maintenance failed; retrying")

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
            except CountersUnavailable:
                return
            # Replay before admitting on Redis again, so that a budget seeded from the ledger
            # right after recovery is not then counted twice by the replay.
            if not await self._replay():
                return
            log.warning("shared counters reachable again after %.1fs",
                        self._clock() - self._down_since)
            self._down_since = None
        elif self._pending:
            await self._replay(limit=1000)

def ratelimit_headers(readings: tuple[RateReading, ...], token_names: set[str]
                      ) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for kind, group in (("requests", [r for r in readings if r.name not in token_names]),
                        ("tokens", [r for r in readings if r.name in token_names])):
        if not group:
            continue
        tightest = min(group, key=lambda r: (r.remaining, -r.reset_s))
        out += [(f"x-ratelimit-limit-{kind}".encode(), str(tightest.limit).encode()),
                (f"x-ratelimit-remaining-{kind}".encode(), str(tightest.remaining).encode()),
                (f"x-ratelimit-reset-{kind}".encode(), format_reset(tightest.reset_s).encode())]
    return out
