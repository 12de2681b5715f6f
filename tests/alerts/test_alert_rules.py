"""Every rule fires on a snapshot where its condition holds and stops (resolves) when it no
longer does; the clock is the snapshot's `now`."""

from __future__ import annotations

import secrets
from dataclasses import replace
from decimal import Decimal

from keystead.alerts.model import BudgetUse, Snapshot
from keystead.alerts.rules import RULES
from keystead.config.alerts import RULE_NAMES, AlertsConfig
from keystead.state.records import (
    EventRecord,
    KeyRecord,
    KeySighting,
    ProviderKeyState,
    RequestOutcome,
)

DAY = 86_400.0
NOW = 1_796_000_000.0  # 53 minutes into an hour (2026-11-30 UTC)
RULES_CONFIG = AlertsConfig().rules


def run(rule: str, snapshot: Snapshot, **settings: object) -> list[str]:
    config = getattr(RULES_CONFIG, rule).model_copy(update=settings)
    return [a.subject for a in RULES[rule](snapshot, config)]


def key(**fields: object) -> KeyRecord:
    values: dict[str, object] = {"id": "ab12cd34", "name": "prod-web-chat", "key_hash": "h",
                                 "env": "prod", "team": "web", "created_at": NOW - 100 * DAY}
    values.update(fields)
    return KeyRecord(**values)  # type: ignore[arg-type]


def test_every_rule_of_the_config_has_a_function() -> None:
    assert tuple(RULES) == RULE_NAMES


def test_budget_one_alert_per_threshold_crossed_resolved_by_a_raise_or_a_new_period() -> None:
    use = BudgetUse(scope="team", name="web", period="2026-11", period_start=NOW - 28 * DAY,
                    budget_usd=Decimal(100), spent_usd=Decimal("81.5"))
    snapshot = Snapshot(now=NOW, budgets=(use,))
    assert run("budget", snapshot) == ["team:web:2026-11:50", "team:web:2026-11:80"]
    [alert] = [a for a in RULES["budget"](snapshot, RULES_CONFIG.budget)
               if a.subject.endswith(":80")]
    assert alert.numbers["spent"] == "$81.50" and alert.numbers["used"] == "81.5%"
    assert "keystead teams update web --budget" in alert.action
    full = replace(use, spent_usd=Decimal(100))
    assert run("budget", replace(snapshot, budgets=(full,)))[-1] == "team:web:2026-11:100"
    raised = replace(use, budget_usd=Decimal(1000))
    assert run("budget", replace(snapshot, budgets=(raised,))) == []
    next_period = replace(use, period="2026-12", spent_usd=Decimal(1))
    assert run("budget", replace(snapshot, budgets=(next_period,))) == []


def test_spend_spike_against_the_same_hour_of_previous_days() -> None:
    hour = int(NOW // 3600) * 3600
    usual = {hour - d * int(DAY): Decimal("2") for d in range(1, 8)}
    quiet = Snapshot(now=NOW, hourly_spend={**usual, hour: Decimal("1.5")})
    assert run("spend_spike", quiet) == []
    spiking = replace(quiet, hourly_spend={**usual, hour: Decimal("10")})  # 11 $/h vs 2
    assert run("spend_spike", spiking) == ["gateway"]
    # a quiet night: far above a usual 0, but under the minimum spend
    night = Snapshot(now=NOW, hourly_spend={hour: Decimal("0.5")})
    assert run("spend_spike", night) == []
    assert run("spend_spike", night, min_spend_usd=Decimal("0.1")) == ["gateway"]


def _outcomes(ok: int, bad: int, status: int) -> tuple[RequestOutcome, ...]:
    return (RequestOutcome("openai", "chat", 200, ok),
            RequestOutcome("openai", "chat", status, bad),
            RequestOutcome(None, None, status, 500))  # gateway answers: no provider, no route


def test_error_rate_per_provider_and_route() -> None:
    failing = Snapshot(now=NOW, outcomes={"error_rate": _outcomes(10, 20, 502)})
    assert run("error_rate", failing) == ["provider:openai", "route:chat"]
    assert run("error_rate", replace(failing, outcomes={"error_rate": _outcomes(100, 5, 502)})
               ) == []
    few = Snapshot(now=NOW, outcomes={"error_rate": _outcomes(1, 5, 502)})
    assert run("error_rate", few) == []  # under min_requests


def test_rate_limited_per_provider_and_route() -> None:
    limited = Snapshot(now=NOW, outcomes={"rate_limited": _outcomes(10, 20, 429)})
    assert run("rate_limited", limited) == ["provider:openai", "route:chat"]
    assert run("rate_limited", replace(limited, outcomes={})) == []


def test_auth_failures_name_the_key() -> None:
    revoked = key(revoked_at=NOW - 3600)
    burst = Snapshot(now=NOW, keys=(revoked,), auth_failures={"ab12cd34": 12})
    [alert] = RULES["auth_failures"](burst, RULES_CONFIG.auth_failures)
    assert alert.subject == "key:ab12cd34" and alert.where["key"] == "prod-web-chat"
    assert alert.numbers["key_status"] == "revoked"
    assert "keystead incident ab12cd34" in alert.action
    assert run("auth_failures", replace(burst, auth_failures={"ab12cd34": 3})) == []


def test_new_source_after_the_key_learned_its_sources() -> None:
    k = key()
    seen = KeySighting("ab12cd34", "net", "203.0.113.0/24", NOW - 60)
    established = Snapshot(now=NOW, keys=(k,), sightings=((seen, NOW - 30 * DAY, 2),))
    assert run("new_source", established) == ["key:ab12cd34:net:203.0.113.0/24"]
    brand_new = replace(established, sightings=((seen, NOW - 600, 2),))
    assert run("new_source", brand_new) == []  # its first hours teach it
    later = replace(established, now=NOW + 2 * 3600)
    assert run("new_source", later) == []  # out of the window: resolved
    assert run("new_source", established, networks=False) == []
    many = replace(established, sightings=((seen, NOW - 30 * DAY, 500),))
    assert run("new_source", many) == []


def test_rotation_due_then_overdue_then_rotated() -> None:
    k = key(created_at=NOW - 25 * DAY)
    snapshot = Snapshot(now=NOW, keys=(k,), rotate_every={"prod": 30 * DAY},
                        remind_before=7 * DAY)
    assert run("rotation", snapshot) == ["key:ab12cd34:due"]
    assert run("rotation", replace(snapshot, now=NOW + 6 * DAY)) == ["key:ab12cd34:overdue"]
    rotated = replace(snapshot, keys=(key(created_at=NOW - 25 * DAY, rotated_at=NOW),))
    assert run("rotation", rotated) == []
    assert run("rotation", replace(snapshot, rotate_every={})) == []


def test_unused_keys() -> None:
    idle = Snapshot(now=NOW, keys=(key(last_used_at=NOW - 40 * DAY),))
    assert run("unused_key", idle) == ["key:ab12cd34"]
    used = replace(idle, keys=(key(last_used_at=NOW - DAY),))
    assert run("unused_key", used) == []
    assert run("unused_key", replace(idle, keys=(key(revoked_at=NOW),))) == []


def test_provider_key_taken_out_and_put_back() -> None:
    leaked = "sk-proj-" + secrets.token_urlsafe(48)
    out = ProviderKeyState("openai", "f" * 64, "#2", since=NOW - 60,
                           reason=f"401 from provider: {leaked}")
    snapshot = Snapshot(now=NOW, provider_keys=(out,))
    [alert] = RULES["provider_key_out"](snapshot, RULES_CONFIG.provider_key_out)
    assert alert.subject == "openai:" + "f" * 16
    assert leaked not in str(alert) and leaked[:16] not in str(alert)  # masked
    assert run("provider_key_out", replace(snapshot, provider_keys=())) == []


def test_breaker_open_then_closed() -> None:
    snapshot = Snapshot(now=NOW, breakers={"chat/openai/gpt-4o": NOW + 30})
    assert run("breaker_open", snapshot) == ["deployment:chat/openai/gpt-4o"]
    assert run("breaker_open", replace(snapshot, breakers={})) == []


def test_check_failing_until_recovered() -> None:
    failed = EventRecord("check.failed", NOW - 60, detail={"target": "provider:openai#1",
                                                           "status": 401, "error": "bad key"},
                         id=5)
    snapshot = Snapshot(now=NOW, checks={"provider:openai#1": failed})
    [alert] = RULES["check_failing"](snapshot, RULES_CONFIG.check_failing)
    assert alert.subject == "provider:openai#1" and alert.numbers["status"] == "401"
    recovered = EventRecord("check.recovered", NOW, detail={"target": "provider:openai#1"}, id=6)
    assert run("check_failing", replace(snapshot, checks={"provider:openai#1": recovered})) == []
