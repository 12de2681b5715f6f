"""Which provider serves which model: adapters built from the config and the store.

A model resolves, in order: `provider/model` naming a provider explicitly; a provider whose
`models` lists it; a provider whose `models` has a matching pattern (`gpt-4o*`). Providers from
the config come before providers added at run time. Results are memoised: resolving is a dict
lookup on the request path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from keystead.config.model import MockConfig, ProviderConfig
from keystead.errors import ModelNotFound
from keystead.providers.azure import AzureProvider
from keystead.providers.base import Capabilities, Provider
from keystead.providers.mock_upstream import MockSettings, create_mock_app
from keystead.providers.openai_compatible import (
    MockProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
)
from keystead.providers.secret_refs import resolve_reference
from keystead.providers.transport import ASGITransport, Transport
from keystead.state.records import ProviderRecord
from keystead.vault.store import Vault

__all__ = ["MOCK_BASE_URL", "ProviderRegistry", "ProviderSpec", "build_provider", "resolve_secret"]

MOCK_BASE_URL = "http://mock-upstream.keystead.internal/v1"
_MEMO_LIMIT = 4096
# A config api_key with one of these prefixes is a reference (env: is resolved at load time).
_CONFIG_REFS = ("vault:", "file:", "aws-sm:", "hcvault:")


@dataclass(frozen=True)
class ProviderSpec:
    """A provider as configured, whatever its source. `api_key_ref` is a reference (env:, vault:,
    file:, aws-sm:, hcvault: -- see secret_refs), never a key."""

    name: str
    type: str
    base_url: str | None
    source: str  # "config" or "store"
    api_key: str | None = field(default=None, repr=False)
    api_key_ref: str | None = None
    models: tuple[str, ...] = ()
    deployments: dict[str, str] = field(default_factory=dict)
    api_version: str | None = None
    supports_responses: bool | None = None
    mock: MockConfig = field(default_factory=lambda: MockConfig())

    @classmethod
    def from_config(cls, name: str, config: ProviderConfig) -> ProviderSpec:
        secret = config.api_key.get_secret_value() if config.api_key else None
        ref = secret if secret and secret.startswith(_CONFIG_REFS) else None
        return cls(name=name, type=config.type, base_url=config.base_url, source="config",
                   api_key=None if ref else secret, api_key_ref=ref, models=config.models,
                   deployments=dict(config.deployments), api_version=config.api_version,
                   supports_responses=config.supports_responses, mock=config.mock)

    @classmethod
    def from_record(cls, record: ProviderRecord) -> ProviderSpec:
        return cls(name=record.name, type=record.type, base_url=record.base_url, source="store",
                   api_key_ref=record.api_key_ref, models=record.models,
                   deployments=dict(record.deployments), api_version=record.api_version,
                   supports_responses=record.supports_responses)


async def resolve_secret(spec: ProviderSpec, vault: Vault | None) -> str | None:
    if spec.api_key is not None:
        return spec.api_key
    if spec.api_key_ref is None:
        return None
    return await resolve_reference(spec.name, spec.api_key_ref, vault)


def build_provider(spec: ProviderSpec, api_key: str | None, http: Transport,
                   read_timeout: float) -> Provider:
    responses = spec.supports_responses
    if spec.type == "mock":
        settings = MockSettings(
            latency_ms=spec.mock.latency_ms, chunk_delay_ms=spec.mock.chunk_delay_ms,
            failure_rate=spec.mock.failure_rate, failure_status=spec.mock.failure_status,
            seed=spec.mock.seed, api_key=api_key, supports_responses=responses is not False,
        )
        if spec.models:
            settings = dataclasses.replace(settings, models=spec.models)
        models = settings.models
        return MockProvider(
            spec.name, base_url=spec.base_url or MOCK_BASE_URL, api_key=api_key, models=models,
            transport=ASGITransport(create_mock_app(settings)) if not spec.base_url else http,
            read_timeout=read_timeout,
            capabilities=Capabilities(responses=responses is not False))
    base_url = spec.base_url or ""
    if spec.type == "azure":
        return AzureProvider(spec.name, base_url=base_url, api_key=api_key, models=spec.models,
                             transport=http, read_timeout=read_timeout,
                             capabilities=Capabilities(responses=bool(responses),
                                                       list_models=False),
                             deployments=spec.deployments,
                             api_version=spec.api_version or "2024-10-21")
    if spec.type == "openai":
        return OpenAIProvider(spec.name, base_url=base_url, api_key=api_key, models=spec.models,
                              transport=http, read_timeout=read_timeout,
                              capabilities=Capabilities(responses=responses is not False))
    return OpenAICompatibleProvider(spec.name, base_url=base_url, api_key=api_key,
                                    models=spec.models, transport=http,
                                    read_timeout=read_timeout,
                                    capabilities=Capabilities(responses=bool(responses)))


class ProviderRegistry:
    def __init__(self, providers: Iterable[Provider]):
        self.providers: dict[str, Provider] = {}
        for provider in providers:
            self.providers.setdefault(provider.name, provider)
        self._memo: dict[str, tuple[Provider, str]] = {}

    def resolve(self, model: str) -> tuple[Provider, str]:
        """The provider for `model` and the model name to send it."""
        try:
            return self._memo[model]
        except KeyError:
            pass
        found = self._find(model)
        if found is None:
            raise ModelNotFound(
                f"The model {model!r} is not served by this gateway.",
                param="model",
                hint=self._suggestion(),
            )
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[model] = found
        return found

    def _find(self, model: str) -> tuple[Provider, str] | None:
        prefix, slash, rest = model.partition("/")
        if slash and prefix in self.providers:
            return self.providers[prefix], rest
        for provider in self.providers.values():
            if model in provider.listed_models:
                return provider, model
        for provider in self.providers.values():
            if provider.serves(model):
                return provider, model
        return None

    def listed_models(self) -> list[tuple[str, Provider]]:
        seen: dict[str, Provider] = {}
        for provider in self.providers.values():
            for model in provider.listed_models:
                seen.setdefault(model, provider)
        return sorted(seen.items())

    def _suggestion(self) -> str:
        models = [m for m, _ in self.listed_models()][:8]
        if not models:
            return "No provider is configured yet: add one with `keystead providers add`."
        return ("GET /v1/models lists the models your key may use, e.g. "
                + ", ".join(models) + ".")

    async def close(self) -> None:
        transports = {id(p.transport): p.transport for p in self.providers.values()}
        for transport in transports.values():
            await transport.close()
