"""What one request carries down the line, from parse to settle."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import TYPE_CHECKING

from keystead.providers.base import Endpoint, Provider
from keystead.state.records import KeyRecord
from keystead.usage.prices import TokenUsage

if TYPE_CHECKING:
    from keystead.keys.tokens import TokenClaims
    from keystead.pipeline.limits import Ticket
    from keystead.routing.router import AttemptLog
    from keystead.routing.table import Deployment

__all__ = ["RequestContext"]


class RequestContext:
    __slots__ = (
        "attempt_log", "attempts", "body", "cache", "cache_control", "claimed_key_id",
        "client_asked_usage", "client_ip", "completion_text", "cost", "cost_known", "degraded",
        "deployment", "discarded_cost", "discarded_usage", "endpoint", "error_code", "fallback",
        "feature", "guard", "key", "model", "priced_usage", "provider", "refused_scope",
        "request_id", "route", "saved_cost", "schema_valid", "started", "status", "stream",
        "ticket", "token", "ts", "ttft", "upstream_model", "usage", "usage_estimated",
        "user_agent", "view",
    )

    def __init__(self, request_id: str, endpoint: Endpoint, client_ip: str | None,
                 user_agent: str | None, feature: str | None):
        self.request_id = request_id
        self.endpoint = endpoint
        self.client_ip = client_ip
        self.user_agent = user_agent
        self.feature = feature
        self.ts = time.time()
        self.started = time.perf_counter()
        self.key: KeyRecord | None = None
        # A refused key text that named a key the table knows (ledger only; `key` stays None).
        self.claimed_key_id: str | None = None
        self.body: bytes = b""
        self.view: object | None = None
        self.model: str | None = None
        self.upstream_model: str | None = None
        self.provider: Provider | None = None
        self.stream = False
        self.client_asked_usage = False
        self.usage: TokenUsage | None = None
        self.priced_usage: TokenUsage | None = None  # the usage `cost` was computed from
        self.usage_estimated = False
        self.completion_text: list[bytes] | None = None
        self.cost = Decimal(0)
        self.cost_known = True
        self.status = 0
        self.error_code: str | None = None
        self.ttft: float | None = None
        self.ticket: Ticket | None = None  # what the limiter holds for this request
        self.refused_scope: str | None = None  # a limit's refusal: key, team, env or token
        self.token: TokenClaims | None = None  # when a short-lived token was used
        self.guard: tuple[str, ...] | None = None  # what a guardrail found (kinds, no values)
        # Routing: the alias asked for (None for a plain model), what served it, how.
        self.route: str | None = None
        self.deployment: Deployment | None = None
        self.attempts = 1
        self.attempt_log: list[AttemptLog] | None = None  # the router's, when it was called
        self.fallback = False  # served by a fallback tier
        self.cache: str | None = None  # "hit", "miss" (looked up, stored), None (not cached)
        self.cache_control: str | None = None  # the request's Cache-Control header
        self.saved_cost = Decimal(0)  # a cache hit: what the answer cost when it was made
        self.schema_valid: bool | None = None  # structured output checked: valid or not
        self.degraded: str | None = None  # "cached" or "static": every deployment failed
        # Answers the provider billed but the client never got (invalid for their schema).
        self.discarded_usage: TokenUsage | None = None
        self.discarded_cost = Decimal(0)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0
