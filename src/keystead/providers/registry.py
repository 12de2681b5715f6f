"""Which provider serves which model: adapters built from the config and the store.

A provider serves what its `models` list says; one that lists none serves its vendor's model
families (`config.model.default_models`). A model resolves to `provider/model`, when that
provider serves the model, else to the first provider by the precedence rules of
`providers.claims` (a real provider before a mock, a listed name before a pattern, ...). Results
are memoised: resolving is a dict lookup on the request path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from keystead.config.provider_values import DEFAULT_MODELS, default_models
from keystead.config.providers import DEFAULT_BASE_URLS, MockConfig, ProviderConfig
from keystead.errors import ModelNotFound
from keystead.mocks import anthropic_upstream
from keystead.mocks.openai_upstream import MockSettings, create_mock_app
from keystead.providers.anthropic import AnthropicProvider
from keystead.providers.azure import AzureProvider
from keystead.providers.base import Capabilities, Provider
from keystead.providers.claims import Claim, best, claims_of
from keystead.providers.gemini import GeminiProvider
from keystead.providers.key_pool import KeyPool
from keystead.providers.openai_compatible import (
    MockProvider,
    OpenAICompatibleProvider,
    OpenAIProvider,
)
from keystead.providers.secret_refs import resolve_reference
from keystead.providers.transport import ASGITransport, Transport
from keystead.state.records import ProviderRecord
from keystead.vault.envelope import VaultError
from keystead.vault.store import Vault

__all__ = ["MOCK_BASE_URL", "KeySource", "ProviderRegistry", "ProviderSpec", "build_provider",
           "resolve_keys", "resolve_secret"]

MOCK_BASE_URL = "http://mock-upstream.keystead.internal/v1"
_MEMO_LIMIT = 4096
# A config api_key with one of these prefixes is a reference (env: is resolved at load time).
_CONFIG_REFS = ("vault:", "file:", "aws-sm:", "hcvault:")


@dataclass(frozen=True)
class KeySource:
    """Where one key of a provider comes from: a reference (env:, vault:, file:, aws-sm:,
    hcvault: -- see secret_refs), or for a config `${VAR}` the value itself (never shown)."""

    ref: str | None = None
    value: str | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        """What may be shown: `vault`, the reference, or `config`."""
        if self.ref is None:
            return "config"
        return "vault" if self.ref.startswith("vault:") else self.ref


@dataclass(frozen=True)
class ProviderSpec:
    """A provider as configured, whatever its source. `keys` says where each of its keys comes
    from (labelled #1, #2, ... in this order); empty: no key."""

    name: str
    type: str
    base_url: str | None
    source: str  # "config" or "store"
    keys: tuple[KeySource, ...] = ()
    models: tuple[str, ...] = ()
    deployments: dict[str, str] = field(default_factory=dict)
    api_version: str | None = None
    supports_responses: bool | None = None
    mock: MockConfig = field(default_factory=lambda: MockConfig())
    # False: `models` are the type's defaults (the config or `providers add` listed none).
    models_given: bool = True

    @classmethod
    def from_config(cls, name: str, config: ProviderConfig) -> ProviderSpec:
        given = (config.api_key,) if config.api_key is not None else config.api_keys or ()
        keys = tuple(KeySource(ref=secret) if secret.startswith(_CONFIG_REFS)
                     else KeySource(value=secret)
                     for secret in (key.get_secret_value() for key in given))
        return cls(name=name, type=config.type, base_url=config.base_url, source="config",
                   keys=keys, models=config.models or default_models(config.type,
                                                                     config.deployments),
                   deployments=dict(config.deployments), api_version=config.api_version,
                   supports_responses=config.supports_responses, mock=config.mock,
                   models_given=bool(config.models))

    @classmethod
    def from_record(cls, record: ProviderRecord) -> ProviderSpec:
        return cls(name=record.name, type=record.type, base_url=record.base_url, source="store",
                   keys=tuple(KeySource(ref=ref) for ref in record.refs),
                   models=record.models or default_models(record.type, record.deployments),
                   deployments=dict(record.deployments), api_version=record.api_version,
                   supports_responses=record.supports_responses,
                   models_given=bool(record.models))


async def resolve_keys(spec: ProviderSpec, vault: Vault | None) -> list[str | VaultError]:
    """Each key of `spec`, in order: its value, or the error that kept it from being read
    (naming the provider and the reference, never a value)."""
    values: list[str | VaultError] = []
    for source in spec.keys:
        if source.value is not None:
            values.append(source.value)
        elif source.ref is not None:
            try:
                values.append(await resolve_reference(spec.name, source.ref, vault))
            except VaultError as exc:
                values.append(exc)
    return values


async def resolve_secret(spec: ProviderSpec, vault: Vault | None) -> str | None:
    """The key of a provider with at most one key (None: it has none); see `resolve_keys`."""
    if len(spec.keys) > 1:
        raise ValueError(f"provider {spec.name} has {len(spec.keys)} keys: use resolve_keys")
    for value in await resolve_keys(spec, vault):
        if isinstance(value, VaultError):
            raise value
        return value
    return None


def build_provider(spec: ProviderSpec, api_key: str | KeyPool | None, http: Transport,
                   read_timeout: float) -> Provider:
    """The adapter for `spec`, authenticating with `api_key`: one key, a `KeyPool`, or None."""
    keys = api_key if isinstance(api_key, KeyPool) else KeyPool.of(spec.name, api_key)
    responses = spec.supports_responses
    if spec.type == "mock" and spec.mock.flavor == "anthropic":  # the Anthropic mock, in process
        mock = anthropic_upstream.AnthropicMockSettings(
            api_key=keys.first if len(keys) == 1 else None, latency_ms=spec.mock.latency_ms,
            models=spec.models or anthropic_upstream.DEFAULT_MODELS,
            chunk_delay_ms=spec.mock.chunk_delay_ms)
        return AnthropicProvider(
            spec.name, base_url=spec.base_url or MOCK_BASE_URL.removesuffix("/v1"), api_key=keys,
            models=mock.models, read_timeout=read_timeout,
            transport=ASGITransport(anthropic_upstream.create_anthropic_mock_app(mock))
            if not spec.base_url else http,
            capabilities=Capabilities(embeddings=False, responses=False))
    if spec.type == "mock":
        api_key = keys.first  # the in-process mock upstream accepts every key of the pool
        settings = MockSettings(
            latency_ms=spec.mock.latency_ms, chunk_delay_ms=spec.mock.chunk_delay_ms,
            failure_rate=spec.mock.failure_rate, failure_status=spec.mock.failure_status,
            seed=spec.mock.seed, api_key=api_key, supports_responses=responses is not False,
            faults=spec.mock.faults,
        )
        if len(keys) > 1:
            settings = dataclasses.replace(settings, api_keys=keys.secrets)
        # Never the mock upstream's own default list (OpenAI's names): see DEFAULT_MODELS.
        models = spec.models or DEFAULT_MODELS["mock"]
        settings = dataclasses.replace(settings, models=models)
        return MockProvider(
            spec.name, base_url=spec.base_url or MOCK_BASE_URL, api_key=keys, models=models,
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
    if spec.type == "anthropic":  # chat only, translated to and from the Messages API
        return AnthropicProvider(spec.name, base_url=base_url or DEFAULT_BASE_URLS["anthropic"],
                                 api_key=api_key, models=spec.models, transport=http,
                                 read_timeout=read_timeout,
                                 capabilities=Capabilities(embeddings=False, responses=False))
    if spec.type == "gemini":  # Google's OpenAI-compatible endpoint
        return GeminiProvider(spec.name, base_url=base_url or DEFAULT_BASE_URLS["gemini"],
                              api_key=api_key, models=spec.models, transport=http,
                              read_timeout=read_timeout,
                              capabilities=Capabilities(responses=False))
    return OpenAICompatibleProvider(spec.name, base_url=base_url, api_key=api_key,
                                    models=spec.models, transport=http,
                                    read_timeout=read_timeout,
                                    capabilities=Capabilities(responses=bool(responses)))


class ProviderRegistry:
    def __init__(self, providers: Iterable[Provider]):
        self.providers: dict[str, Provider] = {}
        for provider in providers:
            self.providers.setdefault(provider.name, provider)
        # In the order given: the config file's providers, then those added at run time.
        self.claims: list[Claim] = claims_of(
            (p.name, p.models, p.type == "mock", "config") for p in self.providers.values())
        self._memo: dict[str, tuple[Provider, str]] = {}
        # Built on first use, then kept: a flood of unknown names must not redo the work.
        self._listed: list[tuple[str, Provider]] | None = None
        self._hint: str | None = None

    def resolve(self, model: str) -> tuple[Provider, str]:
        """The provider for `model` and the model name to send it."""
        try:
            return self._memo[model]
        except KeyError:
            pass
        found = self._find(model)
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[model] = found
        return found

    def _find(self, model: str) -> tuple[Provider, str]:
        prefix, slash, rest = model.partition("/")
        named = self.providers.get(prefix) if slash else None
        if named is not None:
            # A name with a slash may be a model's own (meta-llama/Llama-3-8B, also
            # openai/gpt-oss-20b): a provider that lists it whole has it.
            claim = best((c for c in self.claims if c.exact), model)
            if claim is not None:
                return self.providers[claim.provider], model
            if named.serves(rest):
                return named, rest
            # Never another provider's pattern (`*` catching `openai/gpt-5`).
            raise ModelNotFound(
                f"Provider {prefix!r} does not serve the model {rest[:100]!r}.", param="model",
                hint=_serves(named))
        claim = best(self.claims, model)
        if claim is not None:
            return self.providers[claim.provider], model
        raise ModelNotFound(
            f"The model {model[:100]!r} is not served by this gateway.",
            param="model",
            hint=self._suggestion(),
        )

    def listed_models(self) -> list[tuple[str, Provider]]:
        """Every model name a provider lists, with the provider that answers it."""
        if self._listed is None:
            seen: dict[str, Provider] = {}
            for claim in self.claims:
                if claim.exact and claim.entry not in seen:
                    winner = best(self.claims, claim.entry)
                    assert winner is not None  # the claim itself matches
                    seen[claim.entry] = self.providers[winner.provider]
            self._listed = sorted(seen.items())
        return list(self._listed)

    def _suggestion(self) -> str:
        if self._hint is None:
            self._hint = self._describe_served()
        return self._hint

    def _describe_served(self) -> str:
        if not self.providers:
            return "No provider is configured yet: add one with `keystead providers add`."
        names = [m for m, _ in self.listed_models()][:8]
        patterns = list(dict.fromkeys(c.entry for c in self.claims if not c.exact))[:8]
        if not names and not patterns:
            return ("No provider lists a model: give one its models (`models:` in the config, "
                    "or `keystead providers add ... --models`).")
        served = ", ".join(names + [f"names like {p}" for p in patterns])
        return f"This gateway serves {served}; GET /v1/models lists what your key may use."

    async def close(self) -> None:
        transports = {id(p.transport): p.transport for p in self.providers.values()}
        for transport in transports.values():
            await transport.close()


def _serves(provider: Provider) -> str:
    """What a provider named in `provider/model` serves, for the 404's hint."""
    if not provider.models:
        return ("It lists no models: give it some (`models:` in the config, or add it again "
                "with --models), e.g. --models '*' for whatever its server has.")
    shown = ", ".join(provider.models[:10]) + (", ..." if len(provider.models) > 10 else "")
    return f"It serves {shown}; ask for one of those, or name no provider."
