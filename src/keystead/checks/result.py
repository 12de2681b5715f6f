"""What one check found (`CheckResult`), and the names of its targets.

A target is named `provider:<provider>#<label>` (one key of a provider's pool: its label, never
the key), `provider:<provider>` (a provider without a key) or `route:<route>`. The metrics
(`keystead_check_up{target}`), the events (`check.failed`, `check.recovered`) and the alert
rules all use these names.

The model, the deployment and the detail may carry a provider's text (the model its answer
names, an error's message): they are made one printable line of bounded length here, where a
result is made, so the admin API, the CLI's table and the events never meet a control
character or a value past their limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from keystead.pipeline.validate import one_line

__all__ = ["CheckResult", "provider_target", "route_target"]

_MODEL_CHARS = 256
_DETAIL_CHARS = 1000


def provider_target(provider: str, label: str | None) -> str:
    return f"provider:{provider}{label or ''}"


def route_target(route: str) -> str:
    return f"route:{route}"


@dataclass(frozen=True, slots=True)
class CheckResult:
    target: str  # provider:<name>#<n> or route:<name>
    kind: str  # "provider" or "route"
    ok: bool
    status: int | None  # the provider's HTTP status; None: no answer came
    # A short class of the failure: "http_401", "timeout", "unreachable", "malformed", ...
    error: str | None
    detail: str  # one line for a person: "ok", or what failed and the fix
    latency_s: float
    checked_at: float  # unix time
    model: str | None = None  # the model that answered (as the provider names it)
    deployment: str | None = None  # a route's: the deployment that answered, provider/model
    # The provider's rate-limit headers (x-ratelimit-*, retry-after, anthropic-ratelimit-*).
    rate_limits: Mapping[str, str] = field(default_factory=dict)
    cost_usd: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for name, limit in (("model", _MODEL_CHARS), ("deployment", _MODEL_CHARS),
                            ("detail", _DETAIL_CHARS), ("error", 64)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, one_line(value, limit))

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "kind": self.kind, "ok": self.ok, "status": self.status,
            "error": self.error, "detail": self.detail,
            "latency_ms": round(self.latency_s * 1000, 1),
            "checked_at": datetime.fromtimestamp(self.checked_at, UTC).isoformat(
                timespec="seconds"),
            "model": self.model, "deployment": self.deployment,
            "rate_limits": dict(self.rate_limits), "cost_usd": format(self.cost_usd, "f"),
        }
