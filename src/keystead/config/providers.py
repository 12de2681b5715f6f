"""A provider's section of the config: its type, endpoint, keys, models and, for the built-in
mock, how it misbehaves. What its values may be and what it serves by default are in
`provider_values.py` (stdlib only, shared with `providers add`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from keystead.config.provider_values import check_base_url, check_deployment, check_model_entry
from keystead.config.strict import Strict

__all__ = ["DEFAULT_BASE_URLS", "MockConfig", "ProviderConfig", "ProviderType"]

ProviderType = Literal["openai", "azure", "openai-compatible", "mock", "anthropic", "gemini"]
# Providers with one public endpoint: their base_url may be left out of the config.
DEFAULT_BASE_URLS = {
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com/v1beta/openai",
}


class MockConfig(Strict):
    latency_ms: float = Field(0.0, ge=0)
    chunk_delay_ms: float = Field(0.0, ge=0)
    failure_rate: float = Field(0.0, ge=0, le=1)
    failure_status: int = Field(500, ge=400, le=599)
    seed: int | None = None
    # A fault script for every request to this provider, e.g. "429,500,ok" (see
    # docs/testing-faults.md); a request's own [[mock:faults=...]] directive beats it.
    faults: str | None = None
    # Whose wire format: OpenAI's (chat, embeddings, responses) or Anthropic's Messages API
    # (then the provider is an `anthropic` adapter over the Anthropic mock; delays only).
    flavor: Literal["openai", "anthropic"] = "openai"

    @model_validator(mode="after")
    def _anthropic_takes_delays(self) -> MockConfig:
        if self.flavor == "anthropic" and (self.failure_rate or self.faults
                                           or self.seed is not None):
            raise ValueError("the anthropic mock takes latency_ms and chunk_delay_ms only")
        return self

    @field_validator("faults")
    @classmethod
    def _faults_parse(cls, value: str | None) -> str | None:
        # Imported on use so the config model pulls in no provider code at import time
        # (mocks.faults is stdlib-only: this costs nothing).
        from keystead.mocks.faults import parse_faults

        if value is not None:
            parse_faults(value)  # FaultSpecError is a ValueError: pydantic reports it
        return value


class ProviderConfig(Strict):
    type: ProviderType
    base_url: str | None = None
    api_key: SecretStr | None = None
    # A pool of keys instead of one: spread over, a refused one taken out (providers/key_pool).
    api_keys: tuple[SecretStr, ...] | None = None
    models: tuple[str, ...] = ()
    # Azure OpenAI: model name -> deployment name, and the api-version query parameter.
    deployments: dict[str, str] = Field(default_factory=dict)
    api_version: str = "2024-10-21"
    supports_responses: bool | None = None
    mock: MockConfig = MockConfig()

    @field_validator("models")
    @classmethod
    def _model_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            check_model_entry(entry)
        return value

    @field_validator("deployments")
    @classmethod
    def _deployments(cls, value: dict[str, str]) -> dict[str, str]:
        for model, deployment in value.items():
            check_model_entry(model)
            check_deployment(deployment)
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_base_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("base_url") \
                and data.get("type") in DEFAULT_BASE_URLS:
            data = {**data, "base_url": DEFAULT_BASE_URLS[data["type"]]}
        return data

    @model_validator(mode="after")
    def _needs(self) -> ProviderConfig:
        if self.type != "mock" and not self.base_url:
            raise ValueError(f"base_url is required for a provider of type {self.type}")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if self.base_url:
            check_base_url(self.base_url)
        if self.api_key is not None and self.api_keys is not None:
            raise ValueError("api_key and api_keys are mutually exclusive: give one key as "
                             "api_key, or several as api_keys: [...]")
        if self.api_keys is not None:
            if not self.api_keys:
                raise ValueError("api_keys is empty: list at least one key, or remove it")
            values = [key.get_secret_value() for key in self.api_keys]
            for i, value in enumerate(values):
                if value in values[:i]:
                    raise ValueError(f"api_keys: key #{i + 1} is the same as key "
                                     f"#{values.index(value) + 1}")
        if self.type in ("openai", "azure", "anthropic", "gemini") and self.api_key is None \
                and self.api_keys is None:
            raise ValueError(f"api_key is required for type {self.type} (use ${{VAR}}; "
                             "several keys: api_keys)")
        return self
