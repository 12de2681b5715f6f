"""Plain records that cross the store interface. No backend types leak past this module."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["KeyRecord", "ProviderRecord", "SealedRecord", "UsageRecord"]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str  # public id, also inside the key text
    name: str
    key_hash: str
    env: str
    team: str | None = None
    owner: str | None = None
    description: str | None = None
    models: tuple[str, ...] | None = None  # None: every model
    endpoints: tuple[str, ...] | None = None  # None: every endpoint
    max_tokens: int | None = None
    max_body_bytes: int | None = None
    created_at: float = 0.0
    expires_at: float | None = None
    revoked_at: float | None = None
    revoked_reason: str | None = None
    last_used_at: float | None = None
    disabled_at: float | None = None  # paused by an operator; enable undoes it, revoke does not

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.disabled_at is not None:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """A provider added at run time (CLI or admin API). Its key is a reference, never a value."""

    name: str
    type: str
    base_url: str | None
    api_key_ref: str | None  # "env:VAR" or "vault:<secret id>"
    models: tuple[str, ...] = ()
    deployments: dict[str, str] = field(default_factory=dict)
    api_version: str | None = None
    supports_responses: bool | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SealedRecord:
    id: str
    wrapped_key: bytes
    ciphertext: bytes
    master_key_id: str


@dataclass(slots=True)
class UsageRecord:
    """One row of the ledger per request, whatever its outcome."""

    request_id: str
    ts: float
    endpoint: str
    status: int
    key_id: str | None = None
    key_name: str | None = None
    team: str | None = None
    env: str | None = None
    feature: str | None = None
    route: str | None = None
    model_requested: str | None = None
    model_served: str | None = None
    provider: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    error_code: str | None = None
    stream: bool = False
    client_ip: str | None = None
    user_agent: str | None = None
    usage_estimated: bool = False
