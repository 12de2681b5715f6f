"""What a run checks: every key of every provider, one target each, and every route.

Chosen by the command's --provider/--route when given, else by `checks.providers` /
`checks.routes`, else everything. Naming only routes checks no provider key, and the other way
round. A name that does not exist is refused (404), not silently skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keystead.checks.result import provider_target, route_target
from keystead.errors import NotFound

if TYPE_CHECKING:
    from keystead.config.checks import ChecksConfig
    from keystead.providers.base import Provider
    from keystead.providers.key_pool import PoolKey
    from keystead.providers.registry import ProviderRegistry
    from keystead.routing.table import Route, RouteTable

__all__ = ["Target", "every_name", "select"]


@dataclass(frozen=True, slots=True, eq=False)
class Target:
    name: str
    provider: Provider | None = None  # a provider check: this provider, with `key` pinned
    key: PoolKey | None = None
    route: Route | None = None  # a route check: through the router

    @property
    def kind(self) -> str:
        return "route" if self.route is not None else "provider"


def select(providers: ProviderRegistry, routes: RouteTable, config: ChecksConfig,
           only_providers: Sequence[str] = (), only_routes: Sequence[str] = ()) -> list[Target]:
    """The targets of a run; `only_*` are the command's own choice (empty: not chosen)."""
    if only_providers or only_routes:
        wanted_providers: Sequence[str] | None = only_providers
        wanted_routes: Sequence[str] | None = only_routes
    else:
        wanted_providers, wanted_routes = config.providers, config.routes
    found: list[Target] = []
    names = sorted(providers.providers) if wanted_providers is None else wanted_providers
    for name in names:
        provider = providers.providers.get(name)
        if provider is None:
            raise NotFound(f"No provider named {name[:128]!r}.",
                           hint="`keystead providers list` shows them.")
        found.extend(_provider_targets(name, provider))
    names = sorted(routes.routes) if wanted_routes is None else wanted_routes
    for name in names:
        route = routes.routes.get(name)
        if route is None:
            raise NotFound(f"No route named {name[:128]!r}.",
                           hint="`keystead routes` shows them.")
        found.append(Target(route_target(name), route=route))
    return found


def every_name(providers: ProviderRegistry, routes: RouteTable) -> set[str]:
    """The name of every target the config has now, chosen or not."""
    names = {target.name for name, provider in providers.providers.items()
             for target in _provider_targets(name, provider)}
    names.update(route_target(name) for name in routes.routes)
    return names


def _provider_targets(name: str, provider: Provider) -> list[Target]:
    """One target per key of the provider's pool (one for a provider without a key)."""
    keys: list[PoolKey | None] = [*provider.keys.keys] or [None]
    return [Target(provider_target(name, key.label if key else None), provider=provider, key=key)
            for key in keys]
