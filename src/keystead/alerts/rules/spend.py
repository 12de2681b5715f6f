"""Money rules: budgets crossing 50/80/100 % and a spend spike against the usual hour."""

from __future__ import annotations

from decimal import Decimal

from keystead.alerts.model import Alert, BudgetUse, Snapshot
from keystead.alerts.rules.common import usd
from keystead.config.alerts import BudgetRule, SpendSpikeRule

__all__ = ["budget", "spend_spike"]

_HOUR = 3600


def _budget_where(use: BudgetUse) -> dict[str, str]:
    if use.scope == "key":
        where = {"key_id": use.name, "key": use.label or use.name}
        if use.team:
            where["team"] = use.team
        if use.env:
            where["env"] = use.env
        return where
    return {use.scope: use.name}


def _budget_action(use: BudgetUse) -> str:
    if use.scope == "key":
        show, raise_it = f"keystead usage --key {use.name} --by model", \
            f"keystead keys update {use.name} --budget N"
    elif use.scope == "team":
        show, raise_it = f"keystead usage --team {use.name} --by key", \
            f"keystead teams update {use.name} --budget N"
    else:
        show, raise_it = f"keystead usage --env {use.name} --by team", \
            f"limits.environments.{use.name}.budget_usd in keystead.yaml"
    return (f"See where it goes: `{show}`. At 100 % requests are refused (429) until the "
            f"period ends; to allow more, raise the budget ({raise_it}).")


def budget(snapshot: Snapshot, settings: BudgetRule) -> list[Alert]:
    """One alert per threshold a budget crossed in its period (the period is in the subject:
    a new period resolves it, and so does a budget raised above the spend)."""
    alerts: list[Alert] = []
    for use in snapshot.budgets:
        if use.budget_usd <= 0:
            continue
        percent = use.spent_usd * 100 / use.budget_usd
        for threshold in settings.thresholds:
            if percent < threshold:
                continue
            alerts.append(Alert(
                rule="budget", subject=f"{use.scope}:{use.name}:{use.period}:{threshold}",
                title=f"{use.scope} {use.label or use.name} has used {threshold}% of its "
                      f"budget for {use.period}",
                since=use.period_start, where=_budget_where(use),
                numbers={"spent": usd(use.spent_usd), "budget": usd(use.budget_usd),
                         "used": f"{percent.quantize(Decimal('0.1'))}%",
                         "threshold": f"{threshold}%", "period": use.period},
                action=_budget_action(use),
                severity="critical" if threshold >= 100 else "warning"))
    return alerts


def spend_spike(snapshot: Snapshot, settings: SpendSpikeRule) -> list[Alert]:
    """This hour's spend rate against the same hour of the previous days (their mean)."""
    now = snapshot.now
    hour = int(now // _HOUR) * _HOUR
    spent = snapshot.hourly_spend.get(hour, Decimal(0))
    if spent < settings.min_spend_usd or spent <= 0:
        return []
    days = settings.baseline_days
    usual = sum((snapshot.hourly_spend.get(hour - d * 86_400, Decimal(0))
                 for d in range(1, days + 1)), Decimal(0)) / days
    # The hour so far, as an hourly rate (at least 10 minutes of it, so one early burst is
    # not multiplied by 60).
    elapsed = max(now - hour, 600.0)
    rate = spent * Decimal(_HOUR) / Decimal(str(min(elapsed, _HOUR)))
    factor = Decimal(str(settings.factor))
    if usual > 0 and rate < usual * factor:
        return []
    ratio = f"{(rate / usual).quantize(Decimal('0.1'))}x" if usual > 0 else "no usual spend"
    return [Alert(
        rule="spend_spike", subject="gateway",
        title=f"spend is {ratio} the usual rate for this hour",
        since=float(hour), where={"scope": "all keys"},
        numbers={"this_hour": usd(spent), "rate_per_hour": usd(rate),
                 "usual_per_hour": usd(usual), "factor": f"{settings.factor:g}x",
                 "baseline_days": str(days)},
        action="Find who spends: `keystead usage --since 1h --by key` (then --by model). A "
               "leaked key? `keystead incident <key>`. A runaway job? lower its key's rpm or "
               "budget (`keystead keys update <key> ...`).",
        severity="critical")]
