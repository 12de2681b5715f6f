"""The configuration as a typed tree.

Unknown keys are refused (`extra="forbid"`), so a misspelt option fails the start instead of being
silently ignored. Secrets are `SecretStr`, so they never print.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from keystead.config.alerts import AlertsConfig
from keystead.config.checks import ChecksConfig
from keystead.config.metrics import MetricsConfig
from keystead.config.providers import ProviderConfig
from keystead.config.routing import RouteConfig, RoutingConfig, check_routes
from keystead.config.strict import Strict as _Strict
from keystead.config.tracing import TracingConfig

__all__ = [
    "AdminConfig",
    "AdminSecretRefs",
    "Config",
    "DatabaseConfig",
    "GuardPolicy",
    "GuardrailsConfig",
    "IncidentsConfig",
    "KeysConfig",
    "LimitsConfig",
    "LimitsValues",
    "LoggingConfig",
    "ModelPrice",
    "RedisConfig",
    "SecretStoresConfig",
    "ServerConfig",
    "TokensConfig",
    "UsageConfig",
    "VaultConfig",
]

DEFAULT_NAME_PATTERN = (
    r"^(?P<env>[a-z][a-z0-9]*)-(?P<service>[a-z0-9]+)-(?P<purpose>[a-z0-9]+)(?:-(?P<nn>\d{2}))?$"
)
DEFAULT_NAME_RULE = (
    "<env>-<service>-<purpose>[-NN], lowercase letters and digits, e.g. prod-webhook-bot-01"
)




class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    upstream_timeout_s: float = Field(600.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    shutdown_grace_s: int = Field(30, ge=0)
    # Slow clients (docs/security.md): a connection must send its request line and headers
    # within header_timeout_s of starting a request, and its body within body_timeout_s of the
    # headers; an idle keep-alive connection is closed after idle_timeout_s.
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    body_timeout_s: float = Field(60.0, gt=0, le=3600)
    idle_timeout_s: float = Field(5.0, gt=0, le=3600)
    # Proxies (CIDRs) whose X-Forwarded-For / Forwarded headers are believed; from anyone else
    # the peer address is the client address.
    trusted_proxies: tuple[str, ...] = ()
    # The header those proxies write the client address into. Only that one is read: proxies
    # pass the other one through from the client untouched, so it could be forged.
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    # Browser origins allowed to call /v1 directly (with short-lived tokens), e.g.
    # ["https://app.example.com"]; "*" allows any. Empty: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an IP address or CIDR") from None
        return value


class DatabaseConfig(_Strict):
    url: str = "sqlite:///keystead.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite:/// (e.g. sqlite:///keystead.db) or postgresql:// "
                "(e.g. postgresql://keystead@db.internal/keystead)"
            )
        return value


class RedisConfig(_Strict):
    """Shared counters for several replicas. Unset: counters live in the process."""

    url: str | None = None
    prefix: str = "keystead:"
    connect_timeout_s: float = Field(1.0, gt=0)
    # How long a Redis call may take before the limiter treats Redis as down.
    timeout_s: float = Field(0.5, gt=0)
    # Connections per process; calls beyond it wait for a free one instead of failing.
    max_connections: int = Field(64, ge=1, le=10_000)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if not value:  # `${KEYSTEAD_REDIS_URL:-}` left empty: no Redis
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class VaultConfig(_Strict):
    master_key: SecretStr | None = None
    master_key_file: str | None = None


class AdminSecretRefs(_Strict):
    """Which references to keys kept outside keystead the admin API (and `keystead --server`)
    may give a provider. Default: none (a key given by value is sealed into the vault).
    keystead's own secrets (KEYSTEAD_* variables, the master key file, a .env) never, whatever
    is listed here (providers/ref_policy.py)."""

    allow_env: tuple[str, ...] = ()  # variable names or patterns: [OPENAI_API_KEY, "AZURE_*"]
    allow_file_dirs: tuple[str, ...] = ()  # absolute directories: [/run/secrets]
    allow_aws_sm: tuple[str, ...] = ()  # secret ids or patterns: ["prod/llm/*"]
    allow_hcvault: tuple[str, ...] = ()  # MOUNT/PATH or patterns: ["secret/llm/*"]

    @field_validator("allow_env")
    @classmethod
    def _env_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_*?\[\]]+", name):
                raise ValueError(f"{name!r} is not an environment variable name or pattern")
        return value

    @field_validator("allow_file_dirs")
    @classmethod
    def _absolute(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for directory in value:
            if not directory.startswith("/") or directory.rstrip("/") == "":
                raise ValueError(f"{directory!r}: give an absolute directory other than /, "
                                 "e.g. /run/secrets")
        return value


class AdminConfig(_Strict):
    token: SecretStr | None = None
    secret_refs: AdminSecretRefs = AdminSecretRefs()


class KeysConfig(_Strict):
    name_pattern: str = DEFAULT_NAME_PATTERN
    name_rule: str = DEFAULT_NAME_RULE
    environments: tuple[str, ...] = ("dev", "staging", "prod")
    # Rotation policy (P5): environment -> how often its keys must be rotated, e.g. {prod: 30d}.
    rotate_every: dict[str, str] = Field(default_factory=dict)
    # A key.rotation_due event is recorded this long before a key falls due (checked hourly).
    remind_before: str = "7d"

    @field_validator("remind_before")
    @classmethod
    def _remind(cls, value: str) -> str:
        from keystead.durations import parse_duration

        parse_duration(value)
        return value

    @field_validator("rotate_every")
    @classmethod
    def _durations(cls, value: dict[str, str]) -> dict[str, str]:
        from keystead.durations import parse_duration

        for env, text in value.items():
            try:
                parse_duration(text)
            except ValueError as exc:
                raise ValueError(f"{env}: {exc}") from None
        return value

    @field_validator("name_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression: {exc}") from None
        return value


class ModelPrice(_Strict):
    input_per_mtok: Decimal = Field(ge=0)
    output_per_mtok: Decimal = Field(ge=0)
    cached_input_per_mtok: Decimal | None = Field(None, ge=0)


class LimitsValues(_Strict):
    """Limits of one scope, as written in the config file (environments)."""

    rpm: int | None = Field(None, ge=1)
    rpd: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    tpd: int | None = Field(None, ge=1)
    max_parallel: int | None = Field(None, ge=1)
    budget_usd: Decimal | None = Field(None, ge=0)
    budget_period: Literal["day", "month"] = "month"


class LimitsConfig(_Strict):
    # Budget days and months start at midnight in this time zone.
    timezone: str = "UTC"
    # Completion tokens charged up front (token limits, budget reservation) when a request sets
    # no max_tokens; settled to the real usage afterwards.
    default_max_tokens: int = Field(4096, ge=1)
    # Holds (budget reservations, concurrency slots) are leases renewed while the request runs;
    # a replica that dies stops renewing and its holds are reclaimed after this long.
    lease_s: float = Field(30.0, ge=1)
    # When Redis cannot be reached: "closed" refuses (503 limits_unavailable), "open" falls back
    # to this replica's own counters with each limit divided by `replicas`.
    on_redis_outage_rates: Literal["open", "closed"] = "open"
    on_redis_outage_budgets: Literal["open", "closed"] = "closed"
    replicas: int = Field(1, ge=1)
    # Under a budget, a model without a known price (neither genai-prices nor `prices:` knows
    # it) would cost nothing: "refuse" answers 403 price_unknown before the call, "allow"
    # lets it through at a recorded cost of 0.
    unpriced_models: Literal["refuse", "allow"] = "refuse"
    environments: dict[str, LimitsValues] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a known time zone (e.g. UTC, Europe/Berlin)") \
                from None
        return value


class UsageConfig(_Strict):
    flush_interval_s: float = Field(1.0, gt=0)
    batch_size: int = Field(500, ge=1)
    queue_max: int = Field(100_000, ge=1)


GuardMode = Literal["off", "record", "mask", "block"]


class GuardPolicy(_Strict):
    """What to do with secrets (provider and keystead keys) and personal data (e-mail, phone,
    card, IBAN) found in what a request sends the model."""

    secrets: GuardMode = "off"
    pii: GuardMode = "off"


class GuardrailsConfig(_Strict):
    default: GuardPolicy = GuardPolicy()
    environments: dict[str, GuardPolicy] = Field(default_factory=dict)  # override the default


class TokensConfig(_Strict):
    """Short-lived tokens minted from keys (POST /v1/keystead/tokens)."""

    default_ttl: str = "15m"
    max_ttl: str = "24h"

    @field_validator("default_ttl", "max_ttl")
    @classmethod
    def _duration(cls, value: str) -> str:
        from keystead.durations import parse_duration

        parse_duration(value)  # ValueError names the accepted forms
        return value


class IncidentsConfig(_Strict):
    # Slack-compatible incoming webhook ({"text": ...}) told of every incident. Its URL is a
    # secret: a reference such as ${INCIDENT_WEBHOOK_URL}, never the URL itself.
    webhook_url: SecretStr | None = None
    forensics_days: int = Field(30, ge=1, le=3650)

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://",
                                                                            "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class SecretStoresConfig(_Strict):
    """Provider keys referenced in external stores (file:, aws-sm:, hcvault:, env:)."""

    refresh_s: float = Field(300.0, ge=10)  # how often they are re-read; a change reloads


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    requests: bool = True


class Config(_Strict):
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    redis: RedisConfig = RedisConfig()
    limits: LimitsConfig = LimitsConfig()
    vault: VaultConfig = VaultConfig()
    admin: AdminConfig = AdminConfig()
    keys: KeysConfig = KeysConfig()
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    usage: UsageConfig = UsageConfig()
    logging: LoggingConfig = LoggingConfig()
    incidents: IncidentsConfig = IncidentsConfig()
    tokens: TokensConfig = TokensConfig()
    guardrails: GuardrailsConfig = GuardrailsConfig()
    secret_stores: SecretStoresConfig = SecretStoresConfig()
    routes: dict[str, RouteConfig] = Field(default_factory=dict)
    routing: RoutingConfig = RoutingConfig()
    # signals (docs/monitoring.md)
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    alerts: AlertsConfig = AlertsConfig()
    checks: ChecksConfig = ChecksConfig()

    @field_validator("routes")
    @classmethod
    def _routes(cls, value: dict[str, RouteConfig]) -> dict[str, RouteConfig]:
        check_routes(value)
        return value

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, value: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", name):
                raise ValueError(
                    f"provider name {name!r} must be lowercase letters, digits, '-' or '_'"
                )
        return value
