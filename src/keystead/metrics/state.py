"""Scrape-time gauges: what the shared state says now, read when Prometheus scrapes.

Budgets (used, held, left per key, team and environment, from the counters), breakers, provider
key states, the ledger writer, Redis and database health, build and config. The reads are
async and bounded in time (`refresh`); the collector then yields what was read, synchronously,
as prometheus-client asks. With `--workers N`, the worker that answers the scrape computes
these (the counters and the store are shared; with in-memory counters, its own view).
"""

from __future__ import annotations

import asyncio
import logging
import platform
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from keystead import __version__
from keystead.metrics.health import CachedPing
from keystead.metrics.labels import OTHER
from keystead.pipeline.limit_rules import NANO_PER_USD, period_bounds
from keystead.reload import CONFIG_VERSION
from keystead.routing.breaker import BreakerState
from keystead.state.records import Limits

if TYPE_CHECKING:
    from keystead.runtime import Runtime

__all__ = ["Budget", "ScrapeState"]

log = logging.getLogger("keystead.metrics")

_BUDGET_PREFIX = "pool:budget:"
_KEY_STATES = ("active", "cooling", "disabled")
_BREAKER_STATES = tuple(state.value for state in BreakerState)


@dataclass(slots=True)
class Budget:
    scope: str  # key, team, env
    name: str  # key public id, team name, environment
    limit: Decimal
    used: Decimal = Decimal(0)  # settled this period
    reserved: Decimal = Decimal(0)  # held by requests in flight

    @property
    def left(self) -> Decimal:
        return max(Decimal(0), self.limit - self.used - self.reserved)


@dataclass(slots=True)
class _Snapshot:
    budgets: list[Budget] = field(default_factory=list)
    redis_up: bool | None = None  # None: no Redis configured
    database_up: bool = False


class ScrapeState(Collector):
    def __init__(self, runtime: Runtime, cap: int, *, timeout_s: float = 2.0,
                 keep_s: float = 5.0):
        self._rt = runtime
        self._cap = cap
        self._timeout_s = timeout_s
        self._keep_s = keep_s
        self._snapshot = _Snapshot()
        self._budgets_at = -float("inf")
        self._database = CachedPing(lambda: runtime.store.get_version(CONFIG_VERSION))
        self._redis = CachedPing(runtime.counters.ping)
        self._reading = asyncio.Lock()  # concurrent scrapes share one read of the budgets
        self._families: list[Metric] = []

    async def refresh(self) -> None:
        """Read the shared state, within `timeout_s` altogether; what could not be read in
        time keeps its last value (health reads as down)."""
        snapshot = self._snapshot
        try:
            snapshot.database_up = await self._database.up()
            if self._rt.config.redis.url:
                snapshot.redis_up = await self._redis.up()
            async with self._reading:
                if time.monotonic() - self._budgets_at >= self._keep_s:
                    # A failed read is not retried before `keep_s` either: a scrape storm
                    # while Redis is slow must not become a storm of SCANs.
                    self._budgets_at = time.monotonic()
                    snapshot.budgets = await asyncio.wait_for(self._read_budgets(),
                                                              self._timeout_s)
        except Exception as exc:  # a scrape must answer: the gauges keep their last values
            log.warning("reading budgets for /metrics failed: %s", type(exc).__name__)
        # Built here, on the event loop, from the runtime's state; the text is rendered in a
        # thread (prometheus-client takes ~15 us per sample), which only reads this list.
        self._families = list(self._build())

    def collect(self) -> Iterable[Metric]:
        return self._families

    async def _read_budgets(self) -> list[Budget]:
        rt = self._rt
        config = rt.config.limits
        zone = ZoneInfo(config.timezone)
        now = time.time()
        wanted: list[tuple[str, str, Limits]] = []
        for key in rt.keys.records():
            if key.limits.budget_usd is not None:
                wanted.append(("key", key.id, key.limits))
        for team in rt.teams.values():
            if team.limits.budget_usd is not None:
                wanted.append(("team", team.name, team.limits))
        for env, values in config.environments.items():
            if values.budget_usd is not None:
                wanted.append(("env", env, Limits.from_dict(values.model_dump())))
        if not wanted:
            return []
        pools = await rt.counters.pools(_BUDGET_PREFIX)
        periods = {period: period_bounds(now, period, zone)[0] for period in ("day", "month")}
        budgets = []
        for scope, name, limits in wanted:
            assert limits.budget_usd is not None
            pool = pools.get(f"{_BUDGET_PREFIX}{scope}:{name}:{periods[limits.budget_period]}")
            budget = Budget(scope, name, Decimal(limits.budget_usd))
            if pool is not None:
                budget.used = Decimal(pool.used) / NANO_PER_USD
                budget.reserved = Decimal(pool.reserved) / NANO_PER_USD
            budgets.append(budget)
        return _capped(budgets, self._cap)

    def _build(self) -> Iterator[Metric]:
        yield from self._budget_families()
        yield from self._breakers()
        yield from self._provider_keys()
        rt = self._rt
        snapshot = self._snapshot
        up = GaugeMetricFamily("keystead_dependency_up",
                               "1 when the dependency answered its last ping (kept 5 s).",
                               labels=("dependency",))
        up.add_metric(("database",), float(snapshot.database_up))
        if snapshot.redis_up is not None:
            up.add_metric(("redis",), float(snapshot.redis_up))
        yield up
        info = GaugeMetricFamily("keystead_build_info", "Always 1: the running version.",
                                 labels=("version", "python"))
        info.add_metric((__version__, platform.python_version()), 1.0)
        yield info
        config = GaugeMetricFamily("keystead_config_info",
                                   "Always 1: the running config file's digest.",
                                   labels=("digest",))
        config.add_metric((rt.live.digest,), 1.0)
        yield config
        yield GaugeMetricFamily("keystead_config_generation",
                                "Config rebuilds (reloads, provider changes) in this process.",
                                value=float(rt.generation))

    def _budget_families(self) -> Iterator[Metric]:
        labels = ("scope", "name")
        families = {
            "limit": GaugeMetricFamily("keystead_budget_limit_usd",
                                       "The budget of this period, USD.", labels=labels),
            "used": GaugeMetricFamily("keystead_budget_used_usd",
                                      "Spent this period (settled), USD.", labels=labels),
            "reserved": GaugeMetricFamily("keystead_budget_reserved_usd",
                                          "Held by requests in flight, USD.", labels=labels),
            "left": GaugeMetricFamily("keystead_budget_left_usd",
                                      "Left this period (limit - used - reserved), USD.",
                                      labels=labels),
        }
        for budget in self._snapshot.budgets:
            values = (budget.scope, budget.name)
            families["limit"].add_metric(values, float(budget.limit))
            families["used"].add_metric(values, float(budget.used))
            families["reserved"].add_metric(values, float(budget.reserved))
            families["left"].add_metric(values, float(budget.left))
        yield from families.values()

    def _breakers(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("keystead_breaker_state",
                                   "1 for the circuit breaker's current state, per deployment.",
                                   labels=("deployment", "state"))
        breakers = self._rt.breakers
        for deployment in self._rt.routes.deployment_ids()[:self._cap]:
            current = breakers.state(deployment).value
            for state in _BREAKER_STATES:
                family.add_metric((deployment, state), float(state == current))
        yield family

    def _provider_keys(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("keystead_provider_key_state",
                                   "1 for each provider key's current state (by its label, "
                                   "never the key).", labels=("provider", "key", "state"))
        count = 0
        for provider in self._rt.providers.providers.values():
            for key in provider.keys.keys:
                count += 1
                if count > self._cap:
                    break
                for state in _KEY_STATES:
                    family.add_metric((provider.name, key.label, state),
                                      float(key.state == state))
        yield family


def _capped(budgets: list[Budget], cap: int) -> list[Budget]:
    """At most `cap` budgets per scope kind: the most used keep their names, the rest are
    summed as `other`."""
    kept: list[Budget] = []
    for scope in ("key", "team", "env"):
        rows = sorted((b for b in budgets if b.scope == scope),
                      key=lambda b: (-(b.used + b.reserved), b.name))
        kept.extend(rows[:cap])
        if len(rows) > cap:
            tail = rows[cap:]
            kept.append(Budget(scope, OTHER, sum((b.limit for b in tail), Decimal(0)),
                               sum((b.used for b in tail), Decimal(0)),
                               sum((b.reserved for b in tail), Decimal(0))))
    return kept
