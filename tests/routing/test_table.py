"""The route table is rebuilt on a reload or a provider change; a deployment's live counters
(requests in flight, latency) carry over by its id, so `max_parallel` and least-busy keep
counting the requests that started on the old table."""

from __future__ import annotations

from keystead.config.routing import RouteConfig, RoutingConfig
from keystead.providers.registry import ProviderRegistry
from keystead.routing.table import RouteTable
from routing.fakes import ScriptedProvider


def table(previous: RouteTable | None = None, model: str = "m") -> RouteTable:
    providers = ProviderRegistry([ScriptedProvider("a"), ScriptedProvider("b")])
    routes = {"r": RouteConfig.model_validate({"deployments": [
        {"provider": "a", "model": model, "max_parallel": 2},
        {"provider": "b", "model": "m"}]})}
    return RouteTable(routes, RoutingConfig(), providers, previous=previous)


def test_requests_in_flight_still_count_after_the_table_is_rebuilt() -> None:
    old = table()
    first = old.routes["r"].deployments[0]
    first.in_flight += 2  # two requests running on the old table
    first.observe_latency(120.0)
    new = table(previous=old)
    again = new.routes["r"].deployments[0]
    assert again is not first and again.id == first.id
    assert again.in_flight == 2 and again.full
    assert again.latency_ms == 120.0
    first.in_flight -= 1  # one of them ends: it ends on the object it started on
    assert again.in_flight == 1 and not again.full


def test_a_deployment_new_in_the_rebuilt_table_starts_empty() -> None:
    old = table()
    old.routes["r"].deployments[0].in_flight += 1
    new = table(previous=old, model="m2")
    assert new.routes["r"].deployments[0].in_flight == 0
    assert new.routes["r"].deployments[1].in_flight == 0
