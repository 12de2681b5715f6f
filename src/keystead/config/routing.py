"""Routes (aliases) and the reliability moves, as written in the config file.

    routes:
      support-default:
        strategy: weighted
        deployments:
          - {provider: openai, model: gpt-4o-mini, weight: 3}
          - {provider: azure-eu, model: gpt-4o-mini, weight: 1}
        fallbacks: [support-smart]
      support-smart:
        deployments: [{provider: openai, model: gpt-4o}]

docs/routing.md is the reference; every default here is the one it names.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "BreakerPolicy",
    "DegradedPolicy",
    "DeploymentConfig",
    "FallbackTrigger",
    "RetryPolicy",
    "RouteCacheConfig",
    "RouteConfig",
    "RoutingConfig",
    "StructuredPolicy",
]

_ROUTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

FallbackTrigger = Literal["error", "context_window", "schema"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """How often and how patiently a route tries before it falls back."""

    # Attempts per tier (the route, then each fallback), the first one included.
    attempts: int = Field(3, ge=1, le=10)
    # Decorrelated jitter: each wait is uniform in [base, 3 x previous wait], capped.
    base_ms: float = Field(200.0, ge=0)
    cap_ms: float = Field(5000.0, ge=0)
    # A provider's Retry-After is honoured up to this; a longer one moves on to another
    # deployment or the fallback instead of making the client wait.
    max_retry_after_s: float = Field(20.0, ge=0)
    # Time to the first byte of one attempt (the status line; for a stream, its first event).
    attempt_timeout_s: float | None = Field(None, gt=0)
    # Time to the first byte over every attempt and wait; the answer may then take its time.
    total_timeout_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _order(self) -> RetryPolicy:
        if self.cap_ms < self.base_ms:
            raise ValueError("cap_ms must be at least base_ms")
        return self


class BreakerPolicy(_Strict):
    """A deployment that failed `failures` times within `window_s` is skipped for `cooldown_s`;
    then one request probes it, and a success closes the breaker."""

    failures: int = Field(5, ge=1)
    window_s: float = Field(30.0, gt=0)
    cooldown_s: float = Field(30.0, gt=0)


class DeploymentConfig(_Strict):
    provider: str
    model: str
    weight: int = Field(1, ge=0, le=1000)  # weighted strategy; 0 = only when others are down
    # The model's context window in tokens; requests certainly larger skip it (and go to the
    # fallback). Unset: keystead knows common models' windows, else no check.
    context_window: int | None = Field(None, ge=1)
    # Requests this deployment may run at once on this replica; a full deployment is skipped.
    max_parallel: int | None = Field(None, ge=1)
    # The deployment's own quota (an Azure deployment's, a provider account's): requests and
    # tokens per minute across every replica. A deployment at its quota is skipped, as a full one.
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


class RouteCacheConfig(_Strict):
    ttl: str = "10m"
    # Answers are cached per key's team by default (tenant isolation); "global" shares them
    # between every key allowed on the route.
    scope: Literal["team", "key", "global"] = "team"
    # Only keys that opted in (`cache: true` on the key) use this cache; a key with `cache:
    # false` never does, opt-in or not.
    opt_in: bool = False

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: str) -> str:
        from keystead.durations import parse_duration

        parse_duration(value)
        return value


class StructuredPolicy(_Strict):
    """What happens when an answer asked for with response_format is not valid JSON for it."""

    validate_output: bool = Field(True, alias="validate")
    # repair: ask the same deployment once more, quoting the error; fallback: the next tier;
    # pass: hand the answer over as it is (and record it as invalid).
    on_invalid: Literal["repair", "fallback", "pass"] = "repair"


class DegradedPolicy(_Strict):
    """When every deployment and fallback failed."""

    serve_cached: bool = True  # a cached answer to the same request, however old
    static_reply: str | None = None  # else this text, as an assistant message


class RouteConfig(_Strict):
    description: str | None = None
    deployments: tuple[DeploymentConfig, ...] = Field(min_length=1)
    strategy: Literal["weighted", "ordered", "least-busy", "latency"] = "weighted"
    # Tried in order once this route's own deployments failed: route names or model names.
    fallbacks: tuple[str, ...] = ()
    fallback_on: tuple[FallbackTrigger, ...] = ("error", "context_window", "schema")
    retry: RetryPolicy | None = None  # None: routing.retry
    cache: RouteCacheConfig | None = None  # None: not cached
    structured_output: StructuredPolicy = StructuredPolicy()
    degraded: DegradedPolicy = DegradedPolicy()


class RoutingConfig(_Strict):
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    # Calls that name a model, not a route, are tried this many times (1: no retries; the
    # OpenAI SDKs retry by themselves, and two layers of retries multiply).
    direct_attempts: int = Field(1, ge=1, le=10)
    # Where cached answers live: "memory" (this process) or "redis" (redis.url, shared).
    cache_backend: Literal["memory", "redis"] = "memory"
    cache_max_mb: int = Field(256, ge=1)


def check_routes(routes: dict[str, RouteConfig]) -> None:
    """Names and fallback cycles. Providers are checked when the route table is built: one
    added at run time (`keystead providers add`) may serve a deployment."""
    for name, route in routes.items():
        if not _ROUTE_NAME.fullmatch(name):
            raise ValueError(f"route name {name!r} must be letters, digits, '.', '_', ':' or '-'")
        if name in route.fallbacks:
            raise ValueError(f"route {name!r} names itself as a fallback")
    for name in routes:
        _no_cycle(name, routes, [])


def _no_cycle(name: str, routes: dict[str, RouteConfig], path: list[str]) -> None:
    if name in path:
        raise ValueError("routes fall back in a circle: " + " -> ".join([*path, name]))
    route = routes.get(name)
    if route is None:
        return
    for fallback in route.fallbacks:
        _no_cycle(fallback, routes, [*path, name])
