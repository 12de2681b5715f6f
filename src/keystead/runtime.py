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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from keystead.config.load import LoadedConfig
from keystead.keys.hashing import KeyHasher
from keystead.keys.naming import NamingRule
from keystead.keys.tokens import TokenSigner
from keystead.pipeline.client_ip import AddressResolver
from keystead.pipeline.identify import KeyTable
from keystead.pipeline.limits import Limiter
from keystead.providers.base import Provider
from keystead.providers.registry import (
    ProviderRegistry,
    ProviderSpec,
    build_provider,
    resolve_secret,
)
from keystead.providers.secret_refs import is_external
from keystead.providers.transport import HttpTransport
from keystead.state.counters import Counters, MemoryCounters
from keystead.state.records import TeamRecord
from keystead.state.sql_store import SQLStore
from keystead.state.store import Store
from keystead.usage.ledger import LedgerWriter
from keystead.usage.prices import PriceBook
from keystead.vault.envelope import MasterKey, VaultError
from keystead.vault.store import Vault, load_master_key

if TYPE_CHECKING:
    from keystead.state.notify import ChangeNotifier

__all__ = ["ProviderStatus", "Runtime"]

log = logging.getLogger("keystead.runtime")

KEYS_VERSION = "keys"  # keys and teams: both shape the policy of a request
PROVIDERS_VERSION = "providers"


@dataclass(frozen=True)
class ProviderStatus:
    spec: ProviderSpec
    error: str | None  # why it is not usable, if it is not


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
        url = config.database.url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") \
                and url != "sqlite:///:memory:":
            url = "sqlite:///" + str(loaded.resolve_path(url[len("sqlite:///"):]))
        store = SQLStore(url)
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
        built: list[Provider] = []
        status: dict[str, ProviderStatus] = {}
        timeout = self.config.server.upstream_timeout_s
        old = self.providers
        for spec in specs:
            try:
                api_key = await resolve_secret(spec, self.vault)
            except VaultError as exc:
                previous = self.provider_status.get(spec.name)
                if is_external(spec.api_key_ref) and previous is not None \
                        and previous.spec == spec and previous.error is None \
                        and spec.name in old.providers:
                    # The external store is out of reach: the key it gave last keeps working.
                    log.error("provider %s: re-reading its key failed, still using the "
                              "previous one: %s", spec.name, exc)
                    built.append(old.providers[spec.name])
                    status[spec.name] = previous
                    continue
                log.error("provider %s is not usable: %s", spec.name, exc)
                status[spec.name] = ProviderStatus(spec, str(exc))
                self._secret_digests.pop(spec.name, None)
                continue
            if is_external(spec.api_key_ref):
                self._secret_digests[spec.name] = self._digest(api_key)
            built.append(build_provider(spec, api_key, self.http, timeout))
            status[spec.name] = ProviderStatus(spec, None)
        self.providers = ProviderRegistry(built)
        self.provider_status = status
        # Mock transports are per-provider; the shared HTTP transport stays open.
        kept = {id(provider) for provider in built}
        for provider in old.providers.values():
            if provider.transport is not self.http and id(provider) not in kept:
                await provider.transport.close()

    def _digest(self, value: str | None) -> bytes:
        return hashlib.blake2b((value or "").encode(), key=self._digest_key).digest()

    async def refresh_secrets(self) -> bool:
        """Re-read every external provider key; rebuild the providers if one changed (True).
        A key that cannot be read now is logged (never its value); the previous one stays."""
        changed = False
        for name, current in list(self.provider_status.items()):
            spec = current.spec
            if not is_external(spec.api_key_ref):
                continue
            try:
                value = await resolve_secret(spec, self.vault)
            except VaultError as exc:
                log.error("provider %s: refreshing its key failed (%s); the previous key stays",
                          name, exc)
                continue
            if self._digest(value) != self._secret_digests.get(name):
                log.info("provider %s: its key changed in %s; reloading", name,
                         spec.api_key_ref.split(":", 1)[0] if spec.api_key_ref else "?")
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
            except Exception:
                log.exception("reloading keys and providers failed; retrying")

    async def close(self) -> None:
        for task in (self._watcher, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            await self.limiter.close()
            if self.notifier is not None:
                await self.notifier.close()
        except Exception:  # the ledger below must still be written
            log.exception("closing the limits or change notices failed")
        await self.ledger.close()
        await self.providers.close()
        await self.http.close()
        await self.counters.close()
        await self.store.close()
