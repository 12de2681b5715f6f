"""The durable-state interface. Callers know this Protocol, never the backend behind it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol, get_args

from keystead.state.records import (
    AlertRecord,
    EventRecord,
    KeyRecord,
    KeySighting,
    ProviderKeyState,
    ProviderRecord,
    RequestOutcome,
    SealedRecord,
    SilenceRecord,
    TeamRecord,
    UsageRecord,
)

__all__ = ["DIMENSIONS", "GROUPS", "Dimension", "DuplicateName", "GroupBy", "InvalidRecord",
           "SpendScope", "Store", "UsageRow"]

# What usage can be filtered by (the rollups' dimensions) and grouped by (those plus time).
Dimension = Literal["key", "team", "env", "feature", "route", "model", "provider", "endpoint"]
DIMENSIONS: tuple[Dimension, ...] = get_args(Dimension)
GroupBy = Literal["key", "team", "env", "feature", "route", "model", "provider", "endpoint",
                  "hour", "day"]
GROUPS: tuple[GroupBy, ...] = get_args(GroupBy)
SpendScope = Literal["key", "team", "env"]


class DuplicateName(Exception):
    """A record with that name exists already."""


class InvalidRecord(Exception):
    """The database refused a record's values (too long, out of range): retrying cannot help."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    group: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: Decimal
    avg_latency_ms: float
    retries: int = 0
    fallbacks: int = 0
    cache_hits: int = 0
    saved_usd: Decimal = Decimal(0)
    schema_checked: int = 0
    schema_invalid: int = 0
    degraded: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "requests": self.requests,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": format(self.cost_usd, "f"),
            "avg_latency_ms": round(self.avg_latency_ms, 2),
            "retries": self.retries,
            "fallbacks": self.fallbacks,
            "cache_hits": self.cache_hits,
            "saved_usd": format(self.saved_usd, "f"),
            "schema_checked": self.schema_checked,
            "schema_invalid": self.schema_invalid,
            "degraded": self.degraded,
        }


class Store(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema to the latest migration."""

    async def close(self) -> None: ...

    # keys
    async def insert_key(self, key: KeyRecord) -> None: ...
    async def get_key(self, key_id: str) -> KeyRecord | None: ...
    async def find_key_by_name(self, name: str) -> KeyRecord | None: ...
    async def list_keys(self) -> list[KeyRecord]: ...
    async def update_key(self, key_id: str, **changes: Any) -> KeyRecord | None: ...
    async def touch_keys(self, last_used: dict[str, float]) -> None: ...

    # events: audit entries (who did what to which key) and reminders
    async def insert_event(self, event: EventRecord) -> None: ...
    async def list_events(self, limit: int = 100, key_id: str | None = None,
                          kind: str | None = None, since: float | None = None
                          ) -> list[EventRecord]:
        """Newest first."""

    # teams
    async def insert_team(self, team: TeamRecord) -> None:
        """Raises DuplicateName when a team of that name exists."""
    async def get_team(self, name: str) -> TeamRecord | None: ...
    async def list_teams(self) -> list[TeamRecord]: ...
    async def update_team(self, name: str, **changes: Any) -> TeamRecord | None: ...

    # providers
    async def insert_provider(self, provider: ProviderRecord) -> None: ...
    async def list_providers(self) -> list[ProviderRecord]: ...
    async def set_provider_keys(self, name: str, refs: Sequence[str]) -> bool:
        """Replace the key references of a provider (its pool); False if there is none."""
    async def delete_provider(self, name: str) -> bool:
        """Also forgets the states of its keys."""
    # provider keys taken out of rotation, shared by every gateway (keyed by fingerprint)
    async def list_provider_key_states(self) -> list[ProviderKeyState]: ...
    async def put_provider_key_state(self, state: ProviderKeyState) -> None: ...
    async def delete_provider_key_state(self, provider: str, fingerprint: str) -> bool: ...

    # vault
    async def put_secret(self, sealed: SealedRecord) -> None: ...
    async def add_secret(self, sealed: SealedRecord) -> bool:
        """Insert only if absent; False if a secret with that id exists (first writer wins)."""
    async def replace_secrets(self, sealed: Sequence[SealedRecord]) -> None:
        """Overwrite existing secrets, all in one transaction (master-key rotation)."""
    async def get_secret(self, secret_id: str) -> SealedRecord | None: ...
    async def list_secrets(self) -> list[SealedRecord]: ...
    async def delete_secret(self, secret_id: str) -> None: ...

    # change counters, polled by running servers to reload their in-memory tables
    async def get_version(self, name: str) -> int: ...
    async def bump_version(self, name: str) -> int: ...

    # usage ledger, and the hourly rollups kept in the same transaction
    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        """Append ledger rows and add them to the hourly rollups, atomically."""
    async def query_usage(self, group_by: GroupBy, since: float, until: float | None = None,
                          filters: Mapping[Dimension, str] | None = None) -> list[UsageRow]:
        """Totals from the rollups (hour granularity: `since` is rounded down to the hour)."""
    async def spend_nanousd(self, scope: SpendScope, value: str, since: float) -> int:
        """Exact spend of a key id, team or environment since `since`, from the ledger.

        Budgets seed their counters from it (after a restart, or when Redis lost its data)."""
    async def recent_usage(self, limit: int, key_id: str | None = None) -> list[UsageRecord]: ...

    async def request_outcomes(self, since: float) -> list[RequestOutcome]:
        """Requests since `since` counted per provider, route and status (alert windows)."""
    async def auth_failures(self, since: float) -> dict[str, int]:
        """The gateway's 401s since `since` per key id the refused key text named."""

    # alerts (alerts/): every transition is a conditional write that one caller wins
    async def fire_alert(self, alert: AlertRecord, cooldown_s: float) -> bool:
        """True if this call made the alert fire: it was unknown, or resolved at least
        `cooldown_s` before `alert.fired_at`."""
    async def resolve_alert(self, rule: str, subject: str, now: float,
                            fired_at: float | None = None) -> bool:
        """True if this call resolved a firing alert (the one fired at `fired_at`, if given)."""
    async def claim_unsent_alert(self, rule: str, subject: str, fired_at: float,
                                 now: float) -> bool:
        """True if this call took over the message of the firing at `fired_at` that nobody
        recorded as sent (its sender died): marks it sent, so only one caller wins."""
    async def record_alert_delivery(self, rule: str, subject: str, sent_at: float,
                                    delivery: Mapping[str, str],
                                    fired_at: float | None = None) -> None: ...
    async def list_alerts(self, since: float | None = None) -> list[AlertRecord]:
        """All alerts; with `since`, the firing ones and those resolved since then."""
    async def prune_alerts(self, resolved_before: float) -> int: ...
    async def put_silence(self, silence: SilenceRecord) -> None: ...
    async def delete_silence(self, target: str) -> bool: ...
    async def list_silences(self, now: float) -> list[SilenceRecord]:
        """The silences still in force at `now`."""
    async def add_key_sightings(self, sightings: Sequence[KeySighting]) -> None:
        """Record sources; one already known keeps its first_seen."""
    async def new_key_sightings(self, since: float, limit: int = 1000
                                ) -> list[tuple[KeySighting, float, int]]:
        """Sources first seen since `since`, each with its key's first sighting of that kind
        and how many sources of that kind the key has."""
