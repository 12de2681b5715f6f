"""The rules: each a pure function (snapshot, its settings) -> the alerts that hold now."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keystead.alerts.model import Alert, Snapshot
from keystead.alerts.rules.keys import new_source, rotation, unused_key
from keystead.alerts.rules.providers import breaker_open, check_failing, provider_key_out
from keystead.alerts.rules.spend import budget, spend_spike
from keystead.alerts.rules.traffic import auth_failures, error_rate, rate_limited
from keystead.config.alerts import RULE_NAMES

__all__ = ["RULES", "Rule"]

Rule = Callable[[Snapshot, Any], list[Alert]]

RULES: dict[str, Rule] = {
    "budget": budget, "spend_spike": spend_spike, "error_rate": error_rate,
    "rate_limited": rate_limited, "auth_failures": auth_failures, "new_source": new_source,
    "rotation": rotation, "unused_key": unused_key, "provider_key_out": provider_key_out,
    "breaker_open": breaker_open, "check_failing": check_failing,
}
assert tuple(RULES) == RULE_NAMES  # one function per rule the config knows, in its order
