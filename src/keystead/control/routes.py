"""What the routes are and how their deployments are doing: for `GET /admin/routes` and
`keystead routes`, and for the on-call engineer asking "why did this go to the fallback?"."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keystead.runtime import Runtime

__all__ = ["route_status"]


async def route_status(runtime: Runtime) -> list[dict[str, Any]]:
    table = runtime.routes
    await runtime.breakers.refresh(table.deployment_ids())  # what every replica sees
    now = time.time()
    result = []
    for name, route in sorted(table.routes.items()):
        config = route.config
        assert config is not None
        deployments = []
        for d in route.deployments:
            until = runtime.breakers.open_until(d.id)
            deployments.append({
                "deployment": d.id, "provider": d.provider.name, "model": d.model,
                "weight": d.weight, "context_window": d.context_window,
                "max_parallel": d.max_parallel, "in_flight": d.in_flight,
                "latency_ms": round(d.latency_ms, 1) if d.latency_ms is not None else None,
                "breaker": runtime.breakers.state(d.id).value,
                "open_for_s": round(until - now, 1) if until and until > now else None,
            })
        result.append({
            "route": name, "description": config.description, "strategy": route.strategy,
            "deployments": deployments,
            "fallbacks": [f.name for f in route.fallbacks],
            "fallback_on": list(config.fallback_on),
            "attempts": route.retry.attempts,
            "cache_ttl": config.cache.ttl if config.cache else None,
            "structured_output": config.structured_output.on_invalid
            if config.structured_output.validate_output else "off",
            "degraded": ("static" if config.degraded.static_reply else
                         "cached" if config.degraded.serve_cached else "off"),
            "problem": table.problems.get(name),
        })
    return result
