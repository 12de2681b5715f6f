"""Providers built from their specs, with pools whose key states every gateway shares.

The runtime asks for a new registry whenever the config or the store's providers change; a
provider whose spec, keys and timeout did not change is handed back as it is, so its keys keep
their states (cooling after a 429, taken out after a 401/403). A key a pool takes out or brings
back is recorded in the store (and as an event) for every gateway; until the store has it, this
process keeps its own view. External keys (file:, aws-sm:, hcvault:, env:) are compared by a
keyed digest, never kept twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable

from keystead.config.model import Config
from keystead.live import ProviderStatus
from keystead.providers.base import Provider
from keystead.providers.key_pool import ACTIVE, COOLING, DISABLED, KeyChange, KeyPool, PoolKey
from keystead.providers.registry import (
    ProviderRegistry,
    ProviderSpec,
    build_provider,
    resolve_keys,
)
from keystead.providers.secret_refs import is_external
from keystead.providers.transport import Transport
from keystead.state.records import EventRecord, ProviderKeyState
from keystead.state.store import Store
from keystead.vault.envelope import VaultError
from keystead.vault.store import Vault

__all__ = ["KEY_DISABLED", "KEY_ENABLED", "ProviderFactory"]

log = logging.getLogger("keystead.runtime")

# Audit events of provider keys (a pool's key taken out on a 401/403, or back).
KEY_DISABLED = "provider.key_disabled"
KEY_ENABLED = "provider.key_enabled"


class ProviderFactory:
    def __init__(self, store: Store, vault: Vault, http: Transport,
                 recorded: Callable[[], Awaitable[None]]):
        self.store = store
        self.vault = vault
        self.http = http
        self._recorded = recorded  # a key state is in the store: tell every gateway
        # External provider keys: a keyed digest of the value each provider was built with, so
        # a refresh sees a change without keeping a second copy of the key.
        self._secret_digests: dict[str, bytes] = {}
        self._digest_key = os.urandom(16)
        # Provider keys a pool of this process took out or brought back, until the store has
        # it (then every gateway reads it from there), and the tasks writing them.
        self._key_pending: dict[tuple[str, str], KeyChange] = {}
        self._key_tasks: set[asyncio.Task[None]] = set()

    async def build(self, config: Config, old: ProviderRegistry,
                    old_status: dict[str, ProviderStatus],
                    ) -> tuple[ProviderRegistry, dict[str, ProviderStatus]]:
        """The providers of `config` and of the store (the config's win a name)."""
        specs = [ProviderSpec.from_config(name, p) for name, p in config.providers.items()]
        specs += [ProviderSpec.from_record(r) for r in await self.store.list_providers()
                  if r.name not in config.providers]
        taken_out = {(state.provider, state.fingerprint): state
                     for state in await self.store.list_provider_key_states()}
        built: list[Provider] = []
        status: dict[str, ProviderStatus] = {}
        timeout = config.server.upstream_timeout_s
        for spec in specs:
            provider, status[spec.name] = await self._build_provider(
                spec, old, old_status.get(spec.name), timeout)
            if provider is not None:
                self._apply_key_states(provider.keys, taken_out)
                built.append(provider)
        return ProviderRegistry(built), status

    async def _build_provider(self, spec: ProviderSpec, old: ProviderRegistry,
                              previous: ProviderStatus | None, read_timeout: float,
                              ) -> tuple[Provider | None, ProviderStatus]:
        """The provider of `spec` with the keys it resolves to: the one already built when
        neither changed (its keys keep their states), else a new one. None: not usable."""
        values = await resolve_keys(spec, self.vault)
        failed = {i: value for i, value in enumerate(values, 1) if isinstance(value, VaultError)}
        unchanged = previous is not None and previous.spec == spec and previous.error is None \
            and spec.name in old.providers \
            and old.providers[spec.name].read_timeout == read_timeout
        if failed and unchanged and any(_rereadable(spec.keys[i - 1].ref) for i in failed):
            assert previous is not None
            # The external store is out of reach, or the vault's master key was rotated under
            # this process (it holds the old one until a restart): the keys read last keep
            # working rather than the provider going dark on a reload.
            log.error("provider %s: re-reading its key failed, still using the previous one: "
                      "%s", spec.name, "; ".join(str(exc) for exc in failed.values()))
            return old.providers[spec.name], previous
        secrets = [(f"#{i}", value) for i, value in enumerate(values, 1)
                   if isinstance(value, str)]
        if failed and not secrets:
            log.error("provider %s is not usable: %s", spec.name,
                      "; ".join(str(exc) for exc in failed.values()))
            self._secret_digests.pop(spec.name, None)
            return None, ProviderStatus(spec, str(next(iter(failed.values()))))
        key_errors = {f"#{i}": str(exc) for i, exc in failed.items()}
        for label, error in key_errors.items():
            log.error("provider %s: key %s cannot be read, the other keys serve: %s",
                      spec.name, label, error)
        digest = self._digest("\0".join(value for _, value in secrets))
        if unchanged and previous is not None and previous.key_errors == key_errors \
                and self._secret_digests.get(spec.name) == digest:
            provider = old.providers[spec.name]  # nothing changed: its keys keep their states
        else:
            provider = build_provider(spec, self._pool(spec.name, secrets), self.http,
                                      read_timeout)
        self._secret_digests[spec.name] = digest
        return provider, ProviderStatus(spec, None, key_errors)

    def _pool(self, name: str, secrets: list[tuple[str, str]]) -> KeyPool:
        keys: list[PoolKey] = []
        for label, secret in secrets:
            key = PoolKey(label, secret)
            same = next((k for k in keys if k.fingerprint == key.fingerprint), None)
            if same is not None:
                log.warning("provider %s: key %s is the same key as %s; used once", name, label,
                            same.label)
                continue
            keys.append(key)
        return KeyPool(name, keys, report=self._key_changed)

    def _apply_key_states(self, pool: KeyPool, taken_out: dict[tuple[str, str],
                                                                ProviderKeyState]) -> None:
        """Bring `pool` in line with what every gateway knows (the store), except for changes
        of this process the store does not have yet."""
        for key in pool.keys:
            ident = (pool.provider, key.fingerprint)
            pending = self._key_pending.get(ident)
            if pending is not None:
                if key.state != pending.state and not (pending.state == ACTIVE
                                                       and key.state == COOLING):
                    pool.restore(key, pending.state, since=pending.since,
                                 reason=pending.reason)
                continue
            row = taken_out.get(ident)
            if row is not None:
                if key.state != DISABLED:
                    pool.restore(key, DISABLED, since=row.since, reason=row.reason)
            elif key.state == DISABLED:  # brought back elsewhere (enable-key)
                pool.restore(key, ACTIVE, reason="re-enabled")

    def _key_changed(self, change: KeyChange) -> None:
        """A pool took a key out or brought it back: record it for every gateway, in a task
        (the request that noticed goes on at once)."""
        self._key_pending[(change.provider, change.fingerprint)] = change
        task = asyncio.get_running_loop().create_task(self._record_key_change(change))
        self._key_tasks.add(task)
        task.add_done_callback(self._key_tasks.discard)

    async def _record_key_change(self, change: KeyChange) -> None:
        ident = (change.provider, change.fingerprint)
        disabled = change.state == DISABLED
        try:
            known = any(state.provider == change.provider
                        and state.fingerprint == change.fingerprint
                        for state in await self.store.list_provider_key_states())
            if known == disabled:  # another gateway noticed first and said so
                if self._key_pending.get(ident) is change:
                    del self._key_pending[ident]
                return
            if disabled:
                await self.store.put_provider_key_state(ProviderKeyState(
                    provider=change.provider, fingerprint=change.fingerprint,
                    label=change.label, since=change.since, reason=change.reason))
            else:
                await self.store.delete_provider_key_state(change.provider, change.fingerprint)
            await self.store.insert_event(EventRecord(
                kind=KEY_DISABLED if disabled else KEY_ENABLED, ts=change.since,
                actor="gateway", detail={
                    "provider": change.provider, "label": change.label,
                    "fingerprint": change.fingerprint, "reason": change.reason,
                    "status": change.status}))
        except Exception:
            log.exception("provider %s: recording that key %s is %s failed; this gateway keeps "
                          "it so", change.provider, change.label, change.state)
            return
        if self._key_pending.get(ident) is change:
            del self._key_pending[ident]
        try:
            await self._recorded()
        except Exception:
            log.exception("provider %s: telling the other gateways about key %s failed; they "
                          "see it within a second", change.provider, change.label)

    def forget_pending_key(self, provider: str, fingerprint: str) -> None:
        """An operator decided about this key (enable-key): a change of ours not yet written
        must not undo it."""
        self._key_pending.pop((provider, fingerprint), None)

    def _digest(self, value: str | None) -> bytes:
        return hashlib.blake2b((value or "").encode(), key=self._digest_key).digest()

    async def secrets_changed(self, status: dict[str, ProviderStatus]) -> bool:
        """Re-read every external provider key: True if one changed since its provider was
        built. A key that cannot be read now is logged (never its value); the previous one
        stays."""
        changed = False
        for name, current in list(status.items()):
            spec = current.spec
            external = sorted({source.ref.split(":", 1)[0] for source in spec.keys
                               if source.ref is not None and is_external(source.ref)})
            if not external:
                continue
            values = await resolve_keys(spec, self.vault)
            failed = [value for value in values if isinstance(value, VaultError)]
            if failed:
                log.error("provider %s: refreshing its key failed (%s); the previous key stays",
                          name, "; ".join(str(exc) for exc in failed))
                continue
            if self._digest("\0".join(str(v) for v in values)) != self._secret_digests.get(name):
                log.info("provider %s: its key changed in %s; reloading", name,
                         ", ".join(external))
                changed = True
        return changed

    async def close(self) -> None:
        if self._key_tasks:  # provider keys taken out just now: their events must be written
            await asyncio.gather(*self._key_tasks, return_exceptions=True)


def _rereadable(ref: str | None) -> bool:
    """A key read again on every rebuild that worked before: an external store's, or the
    vault's (which a running process reads with the master key it started with)."""
    return ref is not None and (is_external(ref) or ref.startswith("vault:"))
