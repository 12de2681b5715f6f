"""The route table: what a request's `model` names, resolved to deployments of live providers.

A name resolves, in order, to a configured route (an alias), else to a provider's model (an
implicit route of one deployment, tried `routing.direct_attempts` times). Routes are rebuilt
whenever providers are, since deployments hold the provider adapters themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import genai_prices
from genai_prices.types import Usage

from keystead.config.routing import RetryPolicy, RouteConfig, RoutingConfig
from keystead.errors import ModelNotFound
from keystead.providers.base import Endpoint, Provider
from keystead.providers.registry import ProviderRegistry
from keystead.state.counters import Rate

__all__ = ["Deployment", "Route", "RouteTable", "known_context_window"]

log = logging.getLogger("keystead.routing")

_PROVIDER_IDS = {"openai": "openai", "azure": "azure", "mock": "openai",
                 "anthropic": "anthropic", "gemini": "google"}


class Load:
    """A deployment's live counters for balancing. Shared by the `Deployment` objects of one id
    across rebuilds of the route table (a reload, a provider change): a request that started on
    the old table still counts, and ends its count, where the new table reads it."""

    __slots__ = ("in_flight", "latency_ms")

    def __init__(self) -> None:
        self.in_flight = 0
        self.latency_ms: float | None = None  # moving average of time to first byte


class Deployment:
    """One provider + model that can serve a route, and its live `Load`."""

    __slots__ = ("context_window", "id", "load", "max_parallel", "model", "provider", "rpm",
                 "tpm", "weight")

    def __init__(self, provider: Provider, model: str, *, weight: int = 1,
                 context_window: int | None = None, max_parallel: int | None = None,
                 rpm: int | None = None, tpm: int | None = None, load: Load | None = None):
        self.provider = provider
        self.model = model
        self.id = f"{provider.name}/{model}"
        self.weight = weight
        self.context_window = context_window
        self.max_parallel = max_parallel
        self.rpm = rpm
        self.tpm = tpm
        self.load = load or Load()

    @property
    def in_flight(self) -> int:
        return self.load.in_flight

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        self.load.in_flight = value

    @property
    def latency_ms(self) -> float | None:
        return self.load.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float | None) -> None:
        self.load.latency_ms = value

    def __repr__(self) -> str:
        return f"Deployment({self.id!r})"

    def observe_latency(self, ms: float) -> None:
        load = self.load
        load.latency_ms = ms if load.latency_ms is None else 0.8 * load.latency_ms + 0.2 * ms

    def quota(self, tokens: int) -> list[Rate]:
        """The deployment's own rates this request would charge (none without a quota)."""
        rates = []
        if self.rpm is not None:
            rates.append(Rate(f"deploy:rpm:{self.id}", self.rpm, 60, 1))
        if self.tpm is not None:
            rates.append(Rate(f"deploy:tpm:{self.id}", self.tpm, 60, max(1, tokens)))
        return rates

    @property
    def full(self) -> bool:
        return self.max_parallel is not None and self.in_flight >= self.max_parallel


@dataclass(eq=False)
class Route:
    name: str
    deployments: list[Deployment]
    strategy: str
    retry: RetryPolicy
    config: RouteConfig | None  # None: an implicit route (a model name, not an alias)
    fallbacks: list[Route] = field(default_factory=list)
    _tiers: list[Route] | None = field(default=None, repr=False)
    _deployments: list[Deployment] | None = field(default=None, repr=False)
    _serving: dict[Endpoint, list[Deployment]] = field(default_factory=dict, repr=False)

    @property
    def implicit(self) -> bool:
        return self.config is None

    def tiers(self) -> list[Route]:
        """This route, then its fallbacks (theirs included, depth first), each once. Computed
        once: the table is rebuilt, not changed, when providers change."""
        if self._tiers is None:
            self._tiers = self._walk()
        return self._tiers

    def _walk(self) -> list[Route]:
        seen: list[Route] = []

        def walk(route: Route) -> None:
            if route in seen:
                return
            seen.append(route)
            for fallback in route.fallbacks:
                walk(fallback)
        walk(self)
        return seen

    def smallest_window(self) -> int | None:
        """The smallest known context window among every tier's deployments."""
        windows = [d.context_window for d in self.all_deployments()
                   if d.context_window is not None]
        return min(windows) if windows else None

    def serving(self, endpoint: Endpoint) -> list[Deployment]:
        """Every deployment of every tier whose provider offers `endpoint`."""
        found = self._serving.get(endpoint)
        if found is None:
            found = self._serving[endpoint] = [
                d for d in self.all_deployments() if d.provider.capabilities.supports(endpoint)]
        return found

    def all_deployments(self) -> list[Deployment]:
        if self._deployments is None:
            self._deployments = [d for tier in self.tiers() for d in tier.deployments]
        return self._deployments


def known_context_window(provider_type: str, model: str) -> int | None:
    """The model's context window from the bundled price data (offline), if it names one."""
    for provider_id in dict.fromkeys((_PROVIDER_IDS.get(provider_type), None)):
        try:
            found = genai_prices.calc_price(Usage(input_tokens=0, output_tokens=0),
                                            model_ref=model, provider_id=provider_id)
        except LookupError:
            continue
        return found.model.context_window
    return None


class RouteTable:
    def __init__(self, routes: dict[str, RouteConfig], routing: RoutingConfig,
                 providers: ProviderRegistry,
                 context_window: Callable[[str, str], int | None] = known_context_window,
                 previous: RouteTable | None = None):
        self._providers = providers
        self._routing = routing
        self._direct_retry = routing.retry.model_copy(
            update={"attempts": routing.direct_attempts})
        self._implicit: dict[str, Route] = {}
        self.problems: dict[str, str] = {}  # route -> why some of it cannot be served
        self.routes: dict[str, Route] = {}
        loads = previous.loads() if previous is not None else {}
        for name, config in routes.items():
            deployments = []
            for item in config.deployments:
                provider = providers.providers.get(item.provider)
                if provider is None:
                    self.problems[name] = f"provider {item.provider!r} is not available"
                    log.error("route %s: provider %s is not available; its deployment of %s "
                              "is left out", name, item.provider, item.model)
                    continue
                window = item.context_window or context_window(provider.type, item.model)
                deployments.append(Deployment(provider, item.model, weight=item.weight,
                                              context_window=window,
                                              max_parallel=item.max_parallel,
                                              rpm=item.rpm, tpm=item.tpm,
                                              load=loads.get(f"{provider.name}/{item.model}")))
            self.routes[name] = Route(name, deployments, config.strategy,
                                      config.retry or routing.retry, config)
        for name, config in routes.items():
            route = self.routes[name]
            for fallback in config.fallbacks:
                target = self.routes.get(fallback) or self._model_route(fallback)
                if target is None:
                    self.problems[name] = f"fallback {fallback!r} is neither a route nor a model"
                    log.error("route %s: fallback %s is neither a route nor a served model",
                              name, fallback)
                    continue
                route.fallbacks.append(target)

    def resolve(self, model: str) -> Route:
        route = self.routes.get(model)
        if route is not None:
            return route
        route = self._implicit.get(model)
        if route is not None:
            return route
        provider, upstream = self._providers.resolve(model)  # ModelNotFound if nobody serves it
        route = Route(model, [Deployment(provider, upstream,
                                         context_window=None)],
                      "ordered", self._direct_retry, None)
        if len(self._implicit) < 4096:
            self._implicit[model] = route
        return route

    def _model_route(self, model: str) -> Route | None:
        try:
            route = self.resolve(model)
        except ModelNotFound:
            return None
        # A model named as a fallback is tried like a route of its own, with the routing retry.
        return Route(route.name, route.deployments, "ordered", self._routing.retry, None)

    def loads(self) -> dict[str, Load]:
        """Each configured deployment's live counters, by id (a rebuilt table takes them on)."""
        return {d.id: d.load for route in self.routes.values() for d in route.deployments}

    def deployment_ids(self) -> list[str]:
        """The deployments that have circuit breakers: those of configured routes (a call that
        names a model has none), fallbacks included."""
        return sorted({d.id for route in self.routes.values() for d in route.all_deployments()})
