"""What one reading of the config makes: the objects requests read, swapped as one.

A reload (or a change of the store's providers) builds a new `Live` completely, then the runtime
swaps it in one assignment. The data plane is built per `Live`, so a request keeps the one it
started on: one consistent config from its first byte to its ledger row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keystead.config.load import LoadedConfig
from keystead.config.model import Config
from keystead.keys.naming import NamingRule
from keystead.pipeline.client_ip import AddressResolver
from keystead.providers.registry import ProviderRegistry, ProviderSpec
from keystead.routing.table import RouteTable
from keystead.usage.prices import PriceBook

__all__ = ["Live", "ProviderStatus", "build_live"]


@dataclass(frozen=True)
class ProviderStatus:
    spec: ProviderSpec
    error: str | None  # why it is not usable, if it is not
    # Keys of a usable provider that cannot be read now (label -> why); the others serve.
    key_errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Live:
    loaded: LoadedConfig
    digest: str  # of the config file's bytes (docs/operations.md: compare with sha256sum)
    providers: ProviderRegistry
    provider_status: dict[str, ProviderStatus]
    routes: RouteTable
    prices: PriceBook
    addresses: AddressResolver
    naming: NamingRule

    @property
    def config(self) -> Config:
        return self.loaded.config


def build_live(loaded: LoadedConfig, digest: str, providers: ProviderRegistry,
               provider_status: dict[str, ProviderStatus], *,
               routes: RouteTable | None = None) -> Live:
    """`routes`: the config's over `providers` unless given."""
    config = loaded.config
    return Live(
        loaded=loaded, digest=digest, providers=providers, provider_status=provider_status,
        routes=routes or RouteTable(config.routes, config.routing, providers),
        prices=PriceBook(dict(config.prices)),
        addresses=AddressResolver(config.server.trusted_proxies,
                                  config.server.forwarded_header),
        naming=NamingRule(config.keys.name_pattern, config.keys.name_rule,
                          config.keys.environments))
