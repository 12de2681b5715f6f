"""Create, list, show, change and revoke virtual keys (P1, P2, P4, P9, P10)."""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keystead.control.bounds import INT32_MAX
from keystead.control.teams import (
    check_allowlist,
    check_limits,
    check_text,
    policy_changes,
)
from keystead.control.typed_text import redact
from keystead.durations import parse_duration
from keystead.errors import InvalidField, NotFound
from keystead.keys.format import generate_key
from keystead.providers.endpoints import Endpoint
from keystead.state.records import EventRecord, KeyRecord, Limits
from keystead.state.store import DuplicateName
from keystead.state.versions import KEYS_VERSION

if TYPE_CHECKING:
    from keystead.control.plane import ControlPlane

__all__ = ["CreatedKey", "KeyService", "key_view"]

_ENDPOINTS = {e.value for e in Endpoint}
_CHANGES = frozenset({"team", "owner", "description", "models", "endpoints", "max_tokens",
                      "max_body_bytes", "expires_in_s", "limits", "ip_allowlist", "cache"})


@dataclass(frozen=True)
class CreatedKey:
    record: KeyRecord
    text: str  # shown once, never stored


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def key_view(record: KeyRecord, now: float | None = None,
             rotation_due_at: float | None = None) -> dict[str, Any]:
    """What the CLI and admin API show of a key: everything but its hash."""
    return {
        "id": record.id, "name": record.name, "status": record.status(now or time.time()),
        "env": record.env, "team": record.team, "owner": record.owner,
        "description": record.description,
        "models": list(record.models) if record.models is not None else None,
        "endpoints": list(record.endpoints) if record.endpoints is not None else None,
        "max_tokens": record.max_tokens, "max_body_bytes": record.max_body_bytes,
        # the response cache: null follows the route, false never, true also opt-in routes
        "cache": record.cache,
        "created_at": _iso(record.created_at), "expires_at": _iso(record.expires_at),
        "revoked_at": _iso(record.revoked_at), "revoked_reason": record.revoked_reason,
        "last_used_at": _iso(record.last_used_at), "disabled_at": _iso(record.disabled_at),
        "limits": record.limits.as_dict(),
        "ip_allowlist": list(record.ip_allowlist) if record.ip_allowlist is not None else None,
        "rotated_at": _iso(record.rotated_at), "rotation_due_at": _iso(rotation_due_at),
        # the credential a rotation replaced works until then (the grace period)
        "previous_key_expires_at": _iso(record.previous_expires_at)
        if record.previous_expires_at is not None and record.previous_expires_at > time.time()
        else None,
    }


def _check_endpoints(endpoints: list[str] | None) -> None:
    if endpoints is not None:
        unknown = sorted(set(endpoints) - _ENDPOINTS)
        if unknown:
            raise InvalidField(f"Unknown endpoint(s): {', '.join(unknown)}.",
                               param="endpoints",
                               hint=f"Choose from {', '.join(sorted(_ENDPOINTS))}.")


def _check_models(models: list[str] | None) -> tuple[str, ...] | None:
    """A model scope as stored: None allows every model; a list must name at least one."""
    if models is None:
        return None
    if not models or any(not isinstance(m, str) or not m.strip() for m in models):
        raise InvalidField("A model scope must name at least one model or pattern: an empty "
                           "one would read as no scope at all.", param="models",
                           hint="Leave models out (null; `--models off` in `keys update`) to "
                                "allow every model, or list them: gpt-4o-mini,gpt-4o*.")
    return tuple(m.strip() for m in models)


def _check_caps(max_tokens: int | None, max_body_bytes: int | None) -> None:
    if max_tokens is not None and not 1 <= max_tokens <= INT32_MAX:
        raise InvalidField(f"max_tokens must be from 1 to {INT32_MAX}.", param="max_tokens")
    if max_body_bytes is not None and not 1024 <= max_body_bytes <= INT32_MAX:
        raise InvalidField(f"max_body_bytes must be from 1024 to {INT32_MAX}.",
                           param="max_body_bytes")


def _check_cache(cache: object) -> bool | None:
    if cache is not None and not isinstance(cache, bool):
        raise InvalidField("cache must be true, false or null (follow the route).",
                           param="cache")
    return cache


def _check_expiry(expires_in_s: float | None) -> None:
    if expires_in_s is not None and expires_in_s <= 0:
        raise InvalidField("The expiry must be in the future.", param="expires")


class KeyService:
    def __init__(self, runtime: ControlPlane, actor: str = "cli"):
        self.rt = runtime
        self.actor = actor  # who acts, for the audit entries: "cli", "admin-api"

    async def record(self, kind: str, key_id: str, **detail: Any) -> None:
        """An audit entry. Never the key text: ids, names, reasons and changed field names; a
        secret quoted in a reason is masked."""
        detail = {name: redact(value) if isinstance(value, str) else value
                  for name, value in detail.items()}
        await self.rt.store.insert_event(EventRecord(kind=kind, ts=time.time(), key_id=key_id,
                                                     actor=self.actor, detail=detail))

    async def create(self, name: str, *, env: str | None = None, team: str | None = None,
                     owner: str | None = None, description: str | None = None,
                     models: list[str] | None = None, endpoints: list[str] | None = None,
                     max_tokens: int | None = None, max_body_bytes: int | None = None,
                     expires_in_s: float | None = None, limits: Limits | None = None,
                     ip_allowlist: list[str] | None = None,
                     cache: bool | None = None) -> CreatedKey:
        """A new key; `cache` False keeps its requests out of the response cache, True lets it
        use routes whose cache is opt-in, None follows each route."""
        check_text("name", name)
        check_text("owner", owner)
        resolved_env = self.rt.naming.check(name, env)
        scope = _check_models(models)
        _check_endpoints(endpoints)
        _check_caps(max_tokens, max_body_bytes)
        _check_expiry(expires_in_s)
        _check_cache(cache)
        checked_limits = check_limits(limits or Limits())
        allowlist = check_allowlist(ip_allowlist)
        if team is not None:
            await self._require_team(team)
        now = time.time()
        generated = generate_key()
        record = KeyRecord(
            id=generated.key_id, name=name, key_hash=self.rt.hasher.hash(generated.text),
            env=resolved_env, team=team, owner=redact(owner), description=redact(description),
            models=scope,
            endpoints=tuple(endpoints) if endpoints is not None else None,
            max_tokens=max_tokens, max_body_bytes=max_body_bytes, created_at=now,
            expires_at=now + expires_in_s if expires_in_s is not None else None,
            limits=checked_limits, ip_allowlist=allowlist, cache=cache,
        )
        try:
            await self.rt.store.insert_key(record)
        except DuplicateName:
            raise InvalidField(f"A key named {name!r} exists already.", param="name",
                               code="duplicate_name",
                               hint="Key names are unique; add a -NN suffix for a second key.") \
                from None
        await self.rt.changed(KEYS_VERSION)
        await self.record("key.created", record.id, name=name, env=resolved_env, team=team)
        return CreatedKey(record, generated.text)

    async def _require_team(self, team: str) -> None:
        # Team limits and budgets apply to a key through its team, so the team must be real:
        # a typo would silently put the key outside every team limit.
        if await self.rt.store.get_team(team) is None:
            raise InvalidField(f"No team named {team!r}.", param="team",
                               hint="Create it first: keystead teams create NAME")

    async def update(self, id_or_name: str, **changes: Any) -> KeyRecord:
        """Change a key's scope and limits. Only the fields given change; None clears one
        (team, owner, description, models, endpoints, max_tokens, max_body_bytes,
        expires_in_s: never expires, ip_allowlist: any address, cache: follow the route).
        `limits` is a mapping of limit -> value (None clears that limit), or None to clear every
        limit."""
        unknown = sorted(set(changes) - _CHANGES)
        if unknown:
            raise InvalidField(f"A key has no field(s) {', '.join(unknown)} to change.",
                               param=unknown[0],
                               hint=f"Changeable: {', '.join(sorted(_CHANGES))}.")
        record = await self.get(id_or_name)
        if record.revoked_at is not None:
            raise InvalidField(f"Key {record.id} ({record.name}) is revoked; revocation is final.",
                               param="key", hint="Create a new key instead.")
        values: dict[str, Any] = {}
        if "team" in changes and changes["team"] is not None:
            await self._require_team(changes["team"])
        for field in ("team", "owner", "description"):
            if field in changes:
                values[field] = changes[field] or None
        for field in ("owner", "description"):  # typed text: a pasted secret is masked
            if field in values:
                values[field] = redact(values[field])
        check_text("owner", values.get("owner"))
        if "models" in changes:
            values["models"] = _check_models(changes["models"])
        if "endpoints" in changes:
            endpoints = changes["endpoints"]
            _check_endpoints(endpoints)
            values["endpoints"] = tuple(endpoints) if endpoints is not None else None
        if "max_tokens" in changes or "max_body_bytes" in changes:
            _check_caps(changes.get("max_tokens"), changes.get("max_body_bytes"))
            values.update({k: changes[k] for k in ("max_tokens", "max_body_bytes")
                           if k in changes})
        if "expires_in_s" in changes:
            expires_in_s = changes["expires_in_s"]
            _check_expiry(expires_in_s)
            values["expires_at"] = (time.time() + expires_in_s if expires_in_s is not None
                                    else None)
        if "cache" in changes:
            values["cache"] = _check_cache(changes["cache"])
        values = policy_changes(record, changes, values)
        if not values:
            return record
        updated = await self.rt.store.update_key(record.id, **values)
        assert updated is not None  # keys are revoked, never deleted
        await self.rt.changed(KEYS_VERSION)
        await self.record("key.updated", record.id, fields=sorted(values))
        return updated

    async def list(self) -> list[KeyRecord]:
        return await self.rt.store.list_keys()

    async def get(self, id_or_name: str) -> KeyRecord:
        record = await self.rt.store.get_key(id_or_name)
        if record is None:
            record = await self.rt.store.find_key_by_name(id_or_name)
        if record is None:
            # The id inside a rotated key's text is its credential's, not the key's.
            record = next((k for k in await self.rt.store.list_keys()
                           if id_or_name in (k.credential_id, k.previous_credential_id)), None)
        if record is None:
            # The caller may have pasted a secret (a provider key) here: never echo it back.
            raise NotFound(f"No key with id or name {redact(id_or_name)!r}.", param="key",
                           hint="`keystead keys list` shows the keys.")
        return record

    async def set_disabled(self, id_or_name: str, disabled: bool) -> KeyRecord:
        """Pause a key (refused with key_disabled) or let it work again. Revoked stays revoked."""
        record = await self.get(id_or_name)
        if record.revoked_at is not None:
            raise InvalidField(f"Key {record.id} ({record.name}) is revoked; revocation is final.",
                               param="key", hint="Create a new key instead.")
        if (record.disabled_at is not None) == disabled:
            return record
        updated = await self.rt.store.update_key(record.id,
                                                 disabled_at=time.time() if disabled else None)
        await self.rt.changed(KEYS_VERSION)
        await self.record("key.disabled" if disabled else "key.enabled", record.id)
        assert updated is not None
        return updated

    def rotation_due_at(self, record: KeyRecord) -> float | None:
        """When the environment's rotation policy wants this key rotated (None: no policy)."""
        period = self.rt.config.keys.rotate_every.get(record.env)
        if period is None or record.revoked_at is not None:
            return None
        return (record.rotated_at or record.created_at) + parse_duration(period)

    def view(self, record: KeyRecord) -> dict[str, Any]:
        return key_view(record, rotation_due_at=self.rotation_due_at(record))

    async def due(self, within_s: float = 0.0) -> builtins.list[KeyRecord]:
        """Keys whose rotation is due now or within `within_s` seconds, most overdue first."""
        horizon = time.time() + within_s
        due = [(at, k) for k in await self.list()
               if (at := self.rotation_due_at(k)) is not None and at <= horizon]
        return [k for _at, k in sorted(due, key=lambda pair: pair[0])]

    async def rotate(self, id_or_name: str, grace_s: float = 86_400.0) -> CreatedKey:
        """A new key text for the same key (name, scopes, limits, budget, usage all stay); the
        old text works on for `grace_s` seconds, then is refused with key_rotated.

        A rotation during another's grace period ends that older text's grace at once: only the
        newest replaced text is kept."""
        if grace_s < 0:
            raise InvalidField("The grace period cannot be negative.", param="grace")
        record = await self.get(id_or_name)
        if record.revoked_at is not None:
            raise InvalidField(f"Key {record.id} ({record.name}) is revoked; revocation is final.",
                               param="key", hint="Create a new key instead.")
        now = time.time()
        generated = generate_key()
        # The replaced text is kept (its grace may be zero) so that it is refused as
        # key_rotated, which tells its user what happened, rather than as unknown.
        updated = await self.rt.store.update_key(
            record.id, credential_id=generated.key_id,
            key_hash=self.rt.hasher.hash(generated.text), rotated_at=now,
            previous_credential_id=record.current_credential, previous_hash=record.key_hash,
            previous_expires_at=now + grace_s)
        assert updated is not None
        await self.rt.changed(KEYS_VERSION)
        await self.record("key.rotated", record.id, grace_s=grace_s,
                          new_credential=generated.key_id)
        return CreatedKey(updated, generated.text)

    async def revoke(self, id_or_name: str, reason: str | None = None) -> KeyRecord:
        record = await self.get(id_or_name)
        if record.revoked_at is not None:
            return record
        reason = redact(reason)
        updated = await self.rt.store.update_key(record.id, revoked_at=time.time(),
                                                 revoked_reason=reason)
        await self.rt.changed(KEYS_VERSION)
        await self.record("key.revoked", record.id, reason=reason)
        assert updated is not None
        return updated
