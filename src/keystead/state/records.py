"""Plain records that cross the store interface. No backend types leak past this module."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any, Literal

__all__ = ["AlertRecord", "BudgetPeriod", "EventRecord", "KeyRecord", "KeySighting", "Limits",
           "ProviderKeyState", "ProviderRecord", "RequestOutcome", "SealedRecord",
           "SilenceRecord", "TeamRecord", "UsageRecord"]

BudgetPeriod = Literal["day", "month"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits, concurrency and budget of one scope (a key, a team or an environment).

    None means "no limit at this scope". Where several scopes apply, each is enforced, so the
    tightest one is what a request meets.
    """

    rpm: int | None = None  # requests per minute
    rpd: int | None = None  # requests per day
    tpm: int | None = None  # tokens per minute (prompt + completion)
    tpd: int | None = None  # tokens per day
    max_parallel: int | None = None  # requests in flight at once
    budget_usd: Decimal | None = None
    budget_period: BudgetPeriod = "month"

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self) if f.name != "budget_period")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the budget as a decimal string, so no float ever touches money."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.budget_usd is not None:
            values["budget_usd"] = format(self.budget_usd, "f")
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Limits:
        if not values:
            return cls()
        known = {f.name for f in fields(cls)}
        clean = {k: v for k, v in values.items() if k in known}
        if clean.get("budget_usd") is not None:
            clean["budget_usd"] = Decimal(str(clean["budget_usd"]))
        return cls(**clean)

    def merged(self, **changes: Any) -> Limits:
        """A copy with `changes` applied; a change to None clears that limit."""
        return replace(self, **changes)


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
    limits: Limits = Limits()
    ip_allowlist: tuple[str, ...] | None = None  # CIDRs; None: any address
    # Rotation (P5). `id` names the key for good (ledger, budgets, limits); the key text carries
    # the id of its *credential*, which a rotation replaces. None: the credential id is `id`.
    credential_id: str | None = None
    rotated_at: float | None = None
    # The credential a rotation replaced, still accepted until previous_expires_at (the grace).
    previous_credential_id: str | None = None
    previous_hash: str | None = None
    previous_expires_at: float | None = None
    # The response cache (P17): None follows the route; False never reads or writes it (prompts
    # holding personal data); True also uses the routes whose cache is `opt_in`.
    cache: bool | None = None

    @property
    def current_credential(self) -> str:
        return self.credential_id or self.id

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.disabled_at is not None:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One audit entry or notice: what happened to which key, when, and who did it."""

    kind: str  # key.created, key.rotated, key.revoked, incident, key.rotation_due, ...
    ts: float
    key_id: str | None = None
    actor: str | None = None  # "cli", "admin-api", "gateway" (the gateway itself, e.g. reminders)
    detail: dict[str, Any] = field(default_factory=dict)  # never key text
    id: int | None = None  # set by the store


@dataclass(frozen=True, slots=True)
class TeamRecord:
    """A team owns keys; its limits and budget apply to all of its keys together."""

    name: str
    description: str | None = None
    owner: str | None = None
    limits: Limits = Limits()
    ip_allowlist: tuple[str, ...] | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """A provider added at run time (CLI or admin API). Its key is a reference, never a value."""

    name: str
    type: str
    base_url: str | None
    api_key_ref: str | None  # "env:VAR" or "vault:<secret id>"; rows before pools had only this
    models: tuple[str, ...] = ()
    deployments: dict[str, str] = field(default_factory=dict)
    api_version: str | None = None
    supports_responses: bool | None = None
    created_at: float = 0.0
    api_key_refs: tuple[str, ...] = ()  # its keys in order (#1, #2, ...); empty: see api_key_ref

    @property
    def refs(self) -> tuple[str, ...]:
        """The references of its keys, in order, for old rows and new alike."""
        if self.api_key_refs:
            return self.api_key_refs
        return (self.api_key_ref,) if self.api_key_ref else ()


@dataclass(frozen=True, slots=True)
class ProviderKeyState:
    """A provider key taken out of rotation, shared by every gateway: keyed by the key's
    fingerprint (a sha256 prefix), so a replaced key comes back by itself."""

    provider: str
    fingerprint: str
    label: str  # its label when it was taken out (#2)
    since: float
    reason: str | None = None
    state: str = "disabled"


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
    # Routing (migration 0007): tries it took, served by a fallback, the cache's part, what a
    # cache hit saved, whether structured output was valid, a degraded answer's source.
    attempts: int = 1
    fallback: bool = False
    cache: str | None = None
    saved_usd: Decimal = Decimal(0)
    schema_valid: bool | None = None
    degraded: str | None = None


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert (a rule and what it is about) and where it stands, shared by every gateway:
    a transition (firing, resolved) is a conditional write only one replica wins."""

    rule: str
    subject: str  # what it is about, stable while the condition lasts: "key:ab12cd34"
    state: str  # "firing" or "resolved"
    fired_at: float
    resolved_at: float | None = None
    title: str = ""
    detail: dict[str, Any] = field(default_factory=dict)  # where, numbers, what to do
    sent_at: float | None = None  # when its last message went out
    delivery: dict[str, Any] | None = None  # channel -> "sent" or why not


@dataclass(frozen=True, slots=True)
class SilenceRecord:
    """No message for a rule (`target` "budget") or one alert ("budget:team:x:2026-12:80")."""

    target: str
    until: float
    reason: str | None = None
    created_at: float = 0.0
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class KeySighting:
    """A source a key was used from: its network (/24, /48) or its user agent's family."""

    key_id: str
    kind: str  # "net" or "ua"
    value: str
    first_seen: float


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """How many requests of one provider and route ended with one status (a window of the
    ledger)."""

    provider: str | None
    route: str | None
    status: int
    count: int
