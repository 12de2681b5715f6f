"""One factory builds everything a process needs; nothing lives in module globals.

The server, the demo and the embedded CLI all open a `Runtime`; only a serving runtime starts the
ledger writer and the watcher that reloads keys and providers when another process changed them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keystead.cache import CacheStore, MemoryCache
from keystead.config.load import LoadedConfig
from keystead.config.model import Config
from keystead.keys.hashing import KeyHasher
from keystead.keys.naming import NamingRule
from keystead.keys.tokens import TokenSigner
from keystead.pipeline.cache_stage import CacheStage
from keystead.pipeline.client_ip import AddressResolver
from keystead.pipeline.identify import KeyTable
from keystead.pipeline.limits import Limiter
from keystead.providers.base import Provider
from keystead.providers.key_pool import ACTIVE, COOLING, DISABLED, KeyChange, KeyPool, PoolKey
from keystead.providers.registry import (
    ProviderRegistry,
    ProviderSpec,
    build_provider,
    resolve_keys,
)
from keystead.providers.secret_refs import is_external
from keystead.providers.transport import HttpTransport
from keystead.routing.breaker import Breakers
from keystead.routing.router import Router
from keystead.routing.table import RouteTable
from keystead.state.counters import Counters, MemoryCounters
from keystead.state.records import EventRecord, ProviderKeyState, TeamRecord
from keystead.state.sql_store import SQLStore
from keystead.state.store import Store
from keystead.state.versions import KEYS_VERSION as KEYS_VERSION
from keystead.state.versions import PROVIDERS_VERSION as PROVIDERS_VERSION
from keystead.usage.ledger import LedgerWriter
from keystead.usage.prices import PriceBook
from keystead.vault.envelope import MasterKey, VaultError
from keystead.vault.store import Vault, load_master_key

if TYPE_CHECKING:
    from keystead.state.notify import ChangeNotifier

__all__ = ["KEY_DISABLED", "KEY_ENABLED", "ProviderStatus", "Runtime"]

log = logging.getLogger("keystead.runtime")

# Audit events of provider keys (a pool's key taken out on a 401/403, or back).
KEY_DISABLED = "provider.key_disabled"
KEY_ENABLED = "provider.key_enabled"


@dataclass(frozen=True)
class ProviderStatus:
    spec: ProviderSpec
    error: str | None  # why it is not usable, if it is not
    # Keys of a usable provider that cannot be read now (label -> why); the others serve.
    key_errors: dict[str, str] = field(default_factory=dict)


class Runtime:
    def __init__(self, loaded: LoadedConfig, store: Store, counters: Counters, vault: Vault,
                 hasher: KeyHasher, *, shared_counters: bool = False,
                 signer: TokenSigner | None = None):
        self.loaded = loaded
        self.config = loaded.config
        self.store = store
        self.counters = counters
        self.vault = vault
        self.hasher = hasher
        self.signer = signer
        self.keys = KeyTable(hasher, signer=signer)
        self.teams: dict[str, TeamRecord] = {}
        self.limiter = Limiter(counters, self.config.limits, store.spend_nanousd,
                               shared=shared_counters)
        self.addresses = AddressResolver(self.config.server.trusted_proxies,
                                         self.config.server.forwarded_header)
        self.notifier: ChangeNotifier | None = None
        self.naming = NamingRule(self.config.keys.name_pattern, self.config.keys.name_rule,
                                 self.config.keys.environments)
        self.prices = PriceBook(dict(self.config.prices))
        self.http = HttpTransport(connect_timeout=self.config.server.connect_timeout_s)
        self.providers = ProviderRegistry(())
        self.provider_status: dict[str, ProviderStatus] = {}
        self.breakers = Breakers(counters, self.config.routing.breaker)
        self.router = Router(self.breakers, counters=counters)
        self.routes = RouteTable({}, self.config.routing, self.providers)
        self.cache = CacheStage(_cache_store(self.config))
        usage = self.config.usage
        self.ledger = LedgerWriter(store, batch_size=usage.batch_size,
                                   flush_interval_s=usage.flush_interval_s,
                                   queue_max=usage.queue_max)
        self._versions: dict[str, int] = {}
        self._watcher: asyncio.Task[None] | None = None
        # External provider keys: a keyed digest of the value each provider was built with, so
        # a refresh sees a change without keeping a second copy of the key.
        self._secret_digests: dict[str, bytes] = {}
        self._digest_key = os.urandom(16)
        # Provider keys a pool of this process took out or brought back, until the store has
        # it (then every gateway reads it from there), and the tasks writing them.
        self._key_pending: dict[tuple[str, str], KeyChange] = {}
        self._key_tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, loaded: LoadedConfig, *, serving: bool,
                   master: MasterKey | None = None) -> Runtime:
        config = loaded.config
        if master is None:
            key_file = config.vault.master_key_file
            master = load_master_key(
                config.vault.master_key.get_secret_value() if config.vault.master_key else None,
                loaded.resolve_path(key_file) if key_file else None,
            )
        store = SQLStore(loaded.store_url())
        await store.open()
        redis = config.redis
        counters: Counters
        try:
            vault = Vault(store, master)
            pepper = await vault.pepper()
            hasher = KeyHasher(pepper)
            signer = TokenSigner(pepper)
            if redis.url:
                # Imported only when configured: the embedded default never loads redis-py.
                from keystead.state.redis_counters import RedisCounters

                counters = RedisCounters(redis.url, redis.prefix, timeout_s=redis.timeout_s,
                                         connect_timeout_s=redis.connect_timeout_s,
                                         max_connections=redis.max_connections)
            else:
                counters = MemoryCounters()
        except Exception:
            await store.close()
            raise
        runtime = cls(loaded, store, counters, vault, hasher, shared_counters=bool(redis.url),
                      signer=signer)
        try:
            if redis.url:
                from keystead.state.notify import ChangeNotifier

                runtime.notifier = ChangeNotifier(redis.url, redis.prefix)
            await runtime.reload_keys()
            await runtime.reload_providers()
        except Exception:
            await runtime.close()
            raise
        if serving:
            runtime.ledger.start()
            runtime.limiter.start()
            loop = asyncio.get_running_loop()
            runtime._watcher = loop.create_task(runtime._watch())
            runtime._refresher = loop.create_task(runtime._refresh_secrets_loop())
            if runtime.notifier is not None:
                runtime.notifier.listen(runtime._heard)  # a task the notifier owns
        return runtime

    async def reload_keys(self) -> None:
        self._versions[KEYS_VERSION] = await self.store.get_version(KEYS_VERSION)
        teams = {team.name: team for team in await self.store.list_teams()}
        self.keys.replace(await self.store.list_keys())
        self.teams = teams

    async def reload_providers(self) -> None:
        self._versions[PROVIDERS_VERSION] = await self.store.get_version(PROVIDERS_VERSION)
        specs = [ProviderSpec.from_config(name, p) for name, p in self.config.providers.items()]
        specs += [ProviderSpec.from_record(r) for r in await self.store.list_providers()
                  if r.name not in self.config.providers]
        taken_out = {(state.provider, state.fingerprint): state
                     for state in await self.store.list_provider_key_states()}
        built: list[Provider] = []
        status: dict[str, ProviderStatus] = {}
        timeout = self.config.server.upstream_timeout_s
        old = self.providers
        for spec in specs:
            provider, status[spec.name] = await self._build_provider(spec, old, timeout)
            if provider is not None:
                self._apply_key_states(provider.keys, taken_out)
                built.append(provider)
        self.providers = ProviderRegistry(built)
        self.provider_status = status
        self.routes = RouteTable(self.config.routes, self.config.routing, self.providers)
        # Mock transports are per-provider; the shared HTTP transport stays open.
        kept = {id(provider) for provider in built}
        for provider in old.providers.values():
            if provider.transport is not self.http and id(provider) not in kept:
                await provider.transport.close()

    async def _build_provider(self, spec: ProviderSpec, old: ProviderRegistry,
                              read_timeout: float) -> tuple[Provider | None, ProviderStatus]:
        """The provider of `spec` with the keys it resolves to: the one already built when
        neither changed (its keys keep their states), else a new one. None: not usable."""
        values = await resolve_keys(spec, self.vault)
        previous = self.provider_status.get(spec.name)
        failed = {i: value for i, value in enumerate(values, 1) if isinstance(value, VaultError)}
        unchanged = previous is not None and previous.spec == spec and previous.error is None \
            and spec.name in old.providers
        if failed and unchanged and any(is_external(spec.keys[i - 1].ref) for i in failed):
            assert previous is not None
            # The external store is out of reach: the keys it gave last keep working.
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
            await self.changed(PROVIDERS_VERSION)
        except Exception:
            log.exception("provider %s: telling the other gateways about key %s failed; they "
                          "see it within a second", change.provider, change.label)

    def forget_pending_key(self, provider: str, fingerprint: str) -> None:
        """An operator decided about this key (enable-key): a change of ours not yet written
        must not undo it."""
        self._key_pending.pop((provider, fingerprint), None)

    def _digest(self, value: str | None) -> bytes:
        return hashlib.blake2b((value or "").encode(), key=self._digest_key).digest()

    async def refresh_secrets(self) -> bool:
        """Re-read every external provider key; rebuild the providers if one changed (True).
        A key that cannot be read now is logged (never its value); the previous one stays."""
        changed = False
        for name, current in list(self.provider_status.items()):
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
        if changed:
            await self.reload_providers()
        return changed

    async def _refresh_secrets_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.secret_stores.refresh_s)
            try:
                await self.refresh_secrets()
            except Exception:
                log.exception("refreshing external provider keys failed; retrying")

    async def changed(self, name: str) -> None:
        """Tell every process (this one at once, the others within a second) that `name` changed."""
        await self.store.bump_version(name)
        await self._reload(name)
        if self.notifier is not None:
            # Pub/sub reaches the other replicas at once; the version poll is the safety net
            # (publish logs and returns False when Redis is out of reach).
            await self.notifier.publish(name)

    async def _reload(self, name: str) -> None:
        if name == KEYS_VERSION:
            await self.reload_keys()
        elif name == PROVIDERS_VERSION:
            await self.reload_providers()

    async def _heard(self, name: str) -> None:
        try:
            await self._reload(name)
        except Exception:
            log.exception("reloading %s after a change notice failed; the poll retries", name)

    async def _watch(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                for name, reload in ((KEYS_VERSION, self.reload_keys),
                                     (PROVIDERS_VERSION, self.reload_providers)):
                    if await self.store.get_version(name) != self._versions.get(name):
                        await reload()
                # Breakers other replicas opened or closed (a dict read without Redis).
                await self.breakers.refresh(self.routes.deployment_ids())
            except Exception:
                log.exception("reloading keys and providers failed; retrying")

    async def close(self) -> None:
        for task in (self._watcher, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._key_tasks:  # provider keys taken out just now: their events must be written
            await asyncio.gather(*self._key_tasks, return_exceptions=True)
        try:
            await self.limiter.close()
            if self.notifier is not None:
                await self.notifier.close()
        except Exception:  # the ledger below must still be written
            log.exception("closing the limits or change notices failed")
        await self.ledger.close()
        await self.providers.close()
        await self.cache.store.close()
        await self.http.close()
        await self.counters.close()
        await self.store.close()


def _cache_store(config: Config) -> CacheStore:
    routing = config.routing
    if routing.cache_backend == "redis" and config.redis.url:
        from keystead.cache.redis_store import RedisCache  # redis-py only when configured

        return RedisCache(config.redis.url, config.redis.prefix + "cache:",
                          max_connections=config.redis.max_connections)
    return MemoryCache(max_bytes=routing.cache_max_mb * 1024 * 1024)
