"""The configuration as a typed tree.

Unknown keys are refused (`extra="forbid"`), so a misspelt option fails the start instead of being
silently ignored. Secrets are `SecretStr`, so they never print.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "AdminConfig",
    "Config",
    "DatabaseConfig",
    "KeysConfig",
    "LoggingConfig",
    "MockConfig",
    "ModelPrice",
    "ProviderConfig",
    "ProviderType",
    "ServerConfig",
    "UsageConfig",
    "VaultConfig",
]

ProviderType = Literal["openai", "azure", "openai-compatible", "mock"]

DEFAULT_NAME_PATTERN = (
    r"^(?P<env>[a-z][a-z0-9]*)-(?P<service>[a-z0-9]+)-(?P<purpose>[a-z0-9]+)(?:-(?P<nn>\d{2}))?$"
)
DEFAULT_NAME_RULE = (
    "<env>-<service>-<purpose>[-NN], lowercase letters and digits, e.g. prod-webhook-bot-01"
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    upstream_timeout_s: float = Field(600.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    shutdown_grace_s: int = Field(30, ge=0)


class DatabaseConfig(_Strict):
    url: str = "sqlite:///keystead.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite:/// (e.g. sqlite:///keystead.db); "
                "PostgreSQL arrives with the scale-out store"
            )
        return value


class VaultConfig(_Strict):
    master_key: SecretStr | None = None
    master_key_file: str | None = None


class AdminConfig(_Strict):
    token: SecretStr | None = None


class KeysConfig(_Strict):
    name_pattern: str = DEFAULT_NAME_PATTERN
    name_rule: str = DEFAULT_NAME_RULE
    environments: tuple[str, ...] = ("dev", "staging", "prod")

    @field_validator("name_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression: {exc}") from None
        return value


class MockConfig(_Strict):
    latency_ms: float = Field(0.0, ge=0)
    chunk_delay_ms: float = Field(0.0, ge=0)
    failure_rate: float = Field(0.0, ge=0, le=1)
    failure_status: int = Field(500, ge=400, le=599)
    seed: int | None = None


class ProviderConfig(_Strict):
    type: ProviderType
    base_url: str | None = None
    api_key: SecretStr | None = None
    models: tuple[str, ...] = ()
    # Azure OpenAI: model name -> deployment name, and the api-version query parameter.
    deployments: dict[str, str] = Field(default_factory=dict)
    api_version: str = "2024-10-21"
    supports_responses: bool | None = None
    mock: MockConfig = MockConfig()

    @model_validator(mode="after")
    def _needs(self) -> ProviderConfig:
        if self.type != "mock" and not self.base_url:
            raise ValueError(f"base_url is required for a provider of type {self.type}")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if self.type in ("openai", "azure") and self.api_key is None:
            raise ValueError(f"api_key is required for type {self.type} (use ${{VAR}})")
        return self


class ModelPrice(_Strict):
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    cached_input_per_mtok: Decimal | None = Field(None, ge=0)


class UsageConfig(_Strict):
    flush_interval_s: float = Field(1.0, gt=0)
    batch_size: int = Field(500, ge=1)
    queue_max: int = Field(100_000, ge=1)


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    requests: bool = True


class Config(_Strict):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    vault: VaultConfig = VaultConfig()
    admin: AdminConfig = AdminConfig()
    keys: KeysConfig = KeysConfig()
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    usage: UsageConfig = UsageConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, value: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
                raise ValueError(
                    f"provider name {name!r} must be lowercase letters, digits, '-' or '_'"
                )
        return value
