"""What the rules read (a `Snapshot`, gathered once per evaluation) and what they say (`Alert`).

Rules are pure functions of a snapshot and their settings: the clock is `Snapshot.now`, so a
test builds a snapshot by hand and moves time by changing one number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from keystead.state.records import (
    EventRecord,
    KeyRecord,
    KeySighting,
    ProviderKeyState,
    RequestOutcome,
)

__all__ = ["Alert", "BudgetUse", "Severity", "Snapshot", "alert_from_detail"]

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class Alert:
    """One condition that holds now. (rule, subject) names it while it lasts: the same pair in
    the next evaluation is the same alert (no second message)."""

    rule: str
    subject: str
    title: str  # what, in one line
    since: float  # since when the condition holds (as far as the rule can tell)
    where: Mapping[str, str] = field(default_factory=dict)  # key, team, env, provider, route
    numbers: Mapping[str, str] = field(default_factory=dict)  # what was measured, against what
    action: str = ""  # what to do
    severity: Severity = "warning"

    def detail(self) -> dict[str, Any]:
        """What the store keeps of it (enough to write the "resolved" message later)."""
        return {"since": self.since, "where": dict(self.where), "numbers": dict(self.numbers),
                "action": self.action, "severity": self.severity}


def alert_from_detail(rule: str, subject: str, title: str, detail: Mapping[str, Any]
                      ) -> Alert:
    severity = detail.get("severity")
    return Alert(rule=rule, subject=subject, title=title,
                 since=float(detail.get("since") or 0.0),
                 where={str(k): str(v) for k, v in (detail.get("where") or {}).items()},
                 numbers={str(k): str(v) for k, v in (detail.get("numbers") or {}).items()},
                 action=str(detail.get("action") or ""),
                 severity=severity if severity in ("info", "warning", "critical") else "warning")


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """A budget (of a key, a team or an environment) and what its period has spent so far."""

    scope: Literal["key", "team", "env"]
    name: str  # key id, team name or environment
    period: str  # "2026-12" or "2026-12-07"
    period_start: float
    budget_usd: Decimal
    spent_usd: Decimal
    label: str = ""  # a key's name
    team: str | None = None
    env: str | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: float
    keys: tuple[KeyRecord, ...] = ()
    budgets: tuple[BudgetUse, ...] = ()
    hourly_spend: Mapping[int, Decimal] = field(default_factory=dict)  # hour start -> USD
    # rule name -> requests per provider, route and status in that rule's window
    outcomes: Mapping[str, tuple[RequestOutcome, ...]] = field(default_factory=dict)
    auth_failures: Mapping[str, int] = field(default_factory=dict)  # key id -> 401s in window
    # new sources: (sighting, the key's first sighting of that kind, its number of sources)
    sightings: tuple[tuple[KeySighting, float, int], ...] = ()
    rotate_every: Mapping[str, float] = field(default_factory=dict)  # env -> seconds
    remind_before: float = 0.0
    provider_keys: tuple[ProviderKeyState, ...] = ()
    breakers: Mapping[str, float] = field(default_factory=dict)  # deployment -> open until
    checks: Mapping[str, EventRecord] = field(default_factory=dict)  # target -> latest event

    def key(self, key_id: str) -> KeyRecord | None:
        for record in self.keys:
            if record.id == key_id:
                return record
        return None
