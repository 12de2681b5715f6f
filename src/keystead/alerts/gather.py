"""Read what the enabled rules need, once per evaluation, into a `Snapshot`.

Cheap by construction: budgets ask the ledger's indexed spend per budget (only scopes that have
one), the spike reads a week of hourly rollups, the windows read minutes of the ledger by its
time index, new sources a small table by its time index, the rest are small tables or the
breakers' in-memory view. A read that fails leaves its rules out of this round (their alerts
neither fire nor resolve on missing data).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from keystead.alerts.model import BudgetUse, Snapshot
from keystead.alerts.rules.providers import CHECK_FAILED, CHECK_RECOVERED
from keystead.durations import parse_duration
from keystead.pipeline.limit_rules import period_bounds
from keystead.state.records import EventRecord, KeyRecord

if TYPE_CHECKING:
    from keystead.config.model import Config
    from keystead.state.store import Store

__all__ = ["AlertSource", "Breakers", "gather"]

log = logging.getLogger("keystead.alerts")

_HOUR = 3600
_CHECK_EVENTS = 500  # the latest check events read (a few per target and transition)


class AlertSource(Protocol):
    """What the engine reads: a serving `Runtime` has all of it."""

    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> Store: ...


# Deployment -> open until, as this replica sees the shared breakers.
Breakers = Callable[[], Mapping[str, float]]


async def gather(source: AlertSource, now: float, enabled: set[str],
                 breakers: Breakers | None = None) -> tuple[Snapshot, set[str]]:
    """The snapshot, and the rules whose data could not be read."""
    config = source.config
    store = source.store
    rules = config.alerts.rules
    values: dict[str, Any] = {"now": now}
    failed: set[str] = set()

    async def read(names: tuple[str, ...], what: str, reader: Callable[[], Awaitable[None]]
                   ) -> None:
        if not enabled.intersection(names):
            return
        try:
            await reader()
        except Exception as exc:
            failed.update(names)
            log.warning("alerts: reading %s failed (%s); those rules skip this round", what,
                        type(exc).__name__)

    keys: list[KeyRecord] = []

    async def read_keys() -> None:
        keys.extend(await store.list_keys())
        values["keys"] = tuple(keys)

    await read(("budget", "auth_failures", "new_source", "rotation", "unused_key"), "keys",
               read_keys)

    async def read_budgets() -> None:
        values["budgets"] = tuple(await _budgets(store, config, keys, now))

    if "budget" not in failed:
        await read(("budget",), "budgets", read_budgets)

    async def read_spend() -> None:
        hour = int(now // _HOUR) * _HOUR
        since = hour - rules.spend_spike.baseline_days * 86_400
        rows = await store.query_usage("hour", since)
        values["hourly_spend"] = {_hour_of(row.group): row.cost_usd for row in rows
                                  if row.group}

    await read(("spend_spike",), "hourly spend", read_spend)

    async def read_outcomes() -> None:
        outcomes: dict[str, Any] = {}
        windows = {name: parse_duration(getattr(rules, name).window)
                   for name in ("error_rate", "rate_limited") if name in enabled}
        by_window: dict[float, Any] = {}
        for name, window in windows.items():
            if window not in by_window:
                by_window[window] = tuple(await store.request_outcomes(now - window))
            outcomes[name] = by_window[window]
        values["outcomes"] = outcomes

    await read(("error_rate", "rate_limited"), "request outcomes", read_outcomes)

    async def read_auth() -> None:
        window = parse_duration(rules.auth_failures.window)
        values["auth_failures"] = await store.auth_failures(now - window)

    await read(("auth_failures",), "401s", read_auth)

    async def read_sightings() -> None:
        window = parse_duration(rules.new_source.window)
        values["sightings"] = tuple(await store.new_key_sightings(now - window))

    await read(("new_source",), "new sources", read_sightings)

    values["rotate_every"] = {env: parse_duration(text)
                              for env, text in config.keys.rotate_every.items()}
    values["remind_before"] = parse_duration(config.keys.remind_before)

    async def read_provider_keys() -> None:
        values["provider_keys"] = tuple(await store.list_provider_key_states())

    await read(("provider_key_out",), "provider key states", read_provider_keys)

    async def read_breakers() -> None:
        assert breakers is not None
        values["breakers"] = {name: until for name, until in breakers().items() if until > now}

    if breakers is not None:
        await read(("breaker_open",), "breakers", read_breakers)

    async def read_checks() -> None:
        latest: dict[str, EventRecord] = {}
        for kind in (CHECK_FAILED, CHECK_RECOVERED):
            for event in await store.list_events(_CHECK_EVENTS, kind=kind):
                target = event.detail.get("target")
                if not isinstance(target, str) or not _is_target(target):
                    continue
                seen = latest.get(target)
                if seen is None or (event.id or 0) > (seen.id or 0):
                    latest[target] = event
        values["checks"] = latest

    await read(("check_failing",), "check events", read_checks)
    return Snapshot(**values), failed


def _is_target(target: str) -> bool:
    """provider:<name>#<n> or route:<name>, in the character set of those names."""
    kind, _, name = target.partition(":")
    return kind in ("provider", "route") and 0 < len(name) <= 140 and all(
        c.isalnum() or c in "-_.#/:" for c in name) and name.isascii()


def _hour_of(label: str) -> int:
    return int(datetime.strptime(label, "%Y-%m-%dT%H:00Z").replace(tzinfo=UTC).timestamp())


async def _budgets(store: Store, config: Config, keys: list[KeyRecord], now: float
                   ) -> list[BudgetUse]:
    """Spend per budget from the hourly rollups: one query per scope and period kind (at most
    six), whatever the number of keys, instead of a sum over a month of ledger rows per budget.
    A period that starts off the hour (a time zone at +5:30) counts from its hour's start."""
    zone = ZoneInfo(config.limits.timezone)
    wanted: list[tuple[Any, str, Decimal, Any, str, dict[str, Any]]] = []
    for key in keys:
        if key.status(now) == "active" and key.limits.budget_usd is not None:
            # the rollups name a key by its name (unique), as reports group it
            wanted.append(("key", key.id, key.limits.budget_usd, key.limits.budget_period,
                           key.name, {"label": key.name, "team": key.team, "env": key.env}))
    for team in await store.list_teams():
        if team.limits.budget_usd is not None:
            wanted.append(("team", team.name, team.limits.budget_usd,
                           team.limits.budget_period, team.name, {}))
    for env, limits in config.limits.environments.items():
        if limits.budget_usd is not None:
            wanted.append(("env", env, limits.budget_usd, limits.budget_period, env, {}))
    spent: dict[tuple[str, str], dict[str, Decimal]] = {}
    uses: list[BudgetUse] = []
    for scope, name, budget, period, group, extra in wanted:
        label, start, _end = period_bounds(now, period, zone)
        totals = spent.get((scope, period))
        if totals is None:
            rows = await store.query_usage(scope, start)
            totals = spent[(scope, period)] = {row.group: row.cost_usd for row in rows
                                               if row.group is not None}
        uses.append(BudgetUse(scope=scope, name=name, period=label, period_start=start,
                              budget_usd=budget, spent_usd=totals.get(group, Decimal(0)),
                              **extra))
    return uses
