"""What a request is counted against: its scopes' limits as rates and holds, and what an
admitted request holds until it is settled (`Ticket`). Built once per scope and cached."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from keystead.state.counters import UNLIMITED, Counters, Hold, Rate, RateReading
from keystead.state.records import Limits

__all__ = ["MINUTE", "NANO_PER_USD", "BudgetRule", "Pending", "Scope", "ScopeKind", "Ticket",
           "period_bounds", "scaled"]

NANO_PER_USD = Decimal(10) ** 9
MINUTE, _DAY = 60, 86_400
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
            for limit, window, unit in ((limits.rpm, MINUTE, "rpm"), (limits.rpd, _DAY, "rpd"))
            if limit)
        self.token_rules = tuple(
            (f"rate:{prefix}:{unit}", limit, window)
            for limit, window, unit in ((limits.tpm, MINUTE, "tpm"), (limits.tpd, _DAY, "tpd"))
            if limit)
        # The key's in-flight pool is always held: it is the status page's gauge too.
        self.inflight = (Hold(f"pool:inflight:{prefix}", limits.max_parallel or UNLIMITED, 1)
                         if kind == "key" or limits.max_parallel else None)
        self.budget_prefix = f"pool:budget:{prefix}:"
        self.budget_capacity = (int(limits.budget_usd * NANO_PER_USD)
                                if limits.budget_usd is not None else None)
        self.needs_tokens = bool(self.token_rules) or self.budget_capacity is not None


@dataclass(frozen=True, slots=True)
class BudgetRule:
    scope: Scope
    hold: Hold
    period_start: float


class Pending(NamedTuple):
    """A settlement waiting for Redis."""

    seq: int
    request_id: str
    used: dict[str, int]
    adjust: tuple[Rate, ...]
    periods: Mapping[str, float]
    once: bool


class Ticket:
    """What one admitted request holds, until `Limiter.settle`."""

    __slots__ = ("budget_rules", "budgets", "counters", "estimated_tokens", "hold_rules", "holds",
                 "readings", "request_id", "reserved_nanousd", "token_rates")

    def __init__(self, request_id: str, counters: Counters):
        self.request_id = request_id
        self.counters = counters  # the counters that admitted it (Redis, or the fallback)
        self.holds: tuple[str, ...] = ()
        self.hold_rules: tuple[Hold, ...] = ()  # to take them again after a loss of data
        self.budgets: tuple[str, ...] = ()
        self.budget_rules: tuple[BudgetRule, ...] = ()  # to seed them at settlement, if need be
        self.token_rates: tuple[Rate, ...] = ()
        self.estimated_tokens = 0
        self.reserved_nanousd = 0
        self.readings: tuple[RateReading, ...] = ()

    @property
    def periods(self) -> dict[str, float]:
        """Budget -> the end of its period (what a settlement that lost its total needs)."""
        return {b.hold.name: b.hold.resets_at for b in self.budget_rules
                if b.hold.resets_at is not None}


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


def scaled(limits: Limits, replicas: int) -> Limits:
    """This replica's share of each limit while the shared counters are down."""
    if replicas <= 1:
        return limits
    share = {name: max(1, value // replicas) for name in ("rpm", "rpd", "tpm", "tpd",
                                                            "max_parallel")
             if (value := getattr(limits, name)) is not None}
    return replace(limits, **share)
