"""One factory builds everything a process needs; nothing lives in module globals.

The server, the demo and the embedded CLI all open a `Runtime`; only a serving runtime starts the
ledger writer and the watcher that reloads keys, providers and the config file when another
process changed them. What the config file makes (providers, routes, prices, ...) is one `Live`,
rebuilt whole and swapped in one step (live.py, reload.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from keystead.cache import CacheStore, MemoryCache
from keystead.config.load import LoadedConfig
from keystead.config.model import Config
from keystead.keys.hashing import KeyHasher
from keystead.keys.naming import NamingRule
from keystead.keys.tokens import TokenSigner
from keystead.live import Live, ProviderStatus, build_live
from keystead.metrics import NoMetrics, open_metrics
from keystead.pipeline.cache_stage import CacheStage
from keystead.pipeline.client_ip import AddressResolver
from keystead.pipeline.identify import KeyTable
from keystead.pipeline.limits import Limiter
from keystead.provider_factory import KEY_DISABLED, KEY_ENABLED, ProviderFactory
from keystead.providers.registry import ProviderRegistry
from keystead.providers.transport import HttpTransport, Transport
from keystead.reload import CONFIG_VERSION, Reloader, file_digest
from keystead.routing.breaker import Breakers
from keystead.routing.router import Router
from keystead.routing.table import RouteTable
from keystead.state.counters import Counters
from keystead.state.memory_counters import MemoryCounters
from keystead.state.outage import OutageLog
from keystead.state.records import TeamRecord
from keystead.state.sql_store import SQLStore
from keystead.state.store import Store
from keystead.state.versions import KEYS_VERSION as KEYS_VERSION
from keystead.state.versions import PROVIDERS_VERSION as PROVIDERS_VERSION
from keystead.usage.ledger import LedgerWriter
from keystead.usage.prices import PriceBook
from keystead.vault.envelope import MasterKey
from keystead.vault.store import Vault, load_master_key

if TYPE_CHECKING:
    from keystead.checks.result import CheckResult
    from keystead.state.notify import ChangeNotifier
    from keystead.tracing.setup import Tracing

__all__ = ["CONFIG_VERSION", "KEY_DISABLED", "KEY_ENABLED", "ProviderStatus", "Runtime"]

log = logging.getLogger("keystead.runtime")



class Runtime:
    def __init__(self, loaded: LoadedConfig, store: Store, counters: Counters, vault: Vault,
                 hasher: KeyHasher, *, shared_counters: bool = False,
                 signer: TokenSigner | None = None, serving: bool = True):
        config = loaded.config
        self.store = store
        self.counters = counters
        self.vault = vault
        self.hasher = hasher
        self.signer = signer
        self.keys = KeyTable(hasher, signer=signer)
        self.teams: dict[str, TeamRecord] = {}
        # Everything the config file makes that a reload may change, swapped as one. No
        # providers yet (open() loads them), so no routes either: they would name none.
        none = ProviderRegistry(())
        self.live = build_live(loaded, file_digest(loaded.path), none, {},
                               routes=RouteTable({}, config.routing, none))
        self.limiter = Limiter(counters, config.limits, store.spend_nanousd,
                               shared=shared_counters)
        self.notifier: ChangeNotifier | None = None
        self.http = HttpTransport(connect_timeout=config.server.connect_timeout_s)
        self.breakers = Breakers(counters, config.routing.breaker)
        self.router = Router(self.breakers, counters=counters)
        self.tracing: Tracing | None = None  # `tracing.enabled`: spans per request and attempt
        self.factory = ProviderFactory(store, vault, self.http,
                                       lambda: self.changed(PROVIDERS_VERSION))
        self.cache = CacheStage(_cache_store(config))
        usage = config.usage
        self.ledger = LedgerWriter(store, batch_size=usage.batch_size,
                                   flush_interval_s=usage.flush_interval_s,
                                   queue_max=usage.queue_max)
        self.reloader = Reloader(self)
        self.limiter.ledger_sync = self.ledger.sync  # a rejoin after Redis lost its data
        self._versions: dict[str, int] = {}
        self._watcher: asyncio.Task[None] | None = None
        # One rebuild of `live` at a time: a providers reload that started on the old config
        # must not swap its result in after a config reload.
        self._rebuilding = asyncio.Lock()
        # Per-provider transports (the in-process mocks) of providers a rebuild replaced: closed
        # once the requests that use them are surely done.
        self._retiring: dict[asyncio.Task[None], list[Transport]] = {}
        self._refresher: asyncio.Task[None] | None = None
        # The latest synthetic check of each target ("provider:openai#1", "route:chat"),
        # written by keystead.checks; the metrics read it.
        self.checks: dict[str, CheckResult] = {}
        self.generation = 0  # rebuilds of `live` (reloads, provider changes): a metric
        # NoMetrics when off, or for a command's runtime nobody scrapes (prometheus-client is
        # then not loaded).
        self.metrics = open_metrics(self) if serving else NoMetrics()
        if self.metrics.enabled:
            from keystead.checks.gauges import check_families  # prometheus-client: metrics on

            self.metrics.add_collector(check_families(lambda: self.checks))

    # What the config made, as it is now (a request reads its data plane's `live` instead).
    @property
    def loaded(self) -> LoadedConfig:
        return self.live.loaded

    @property
    def config(self) -> Config:
        return self.live.loaded.config

    @property
    def providers(self) -> ProviderRegistry:
        return self.live.providers

    @property
    def provider_status(self) -> dict[str, ProviderStatus]:
        return self.live.provider_status

    @property
    def routes(self) -> RouteTable:
        return self.live.routes

    @property
    def prices(self) -> PriceBook:
        return self.live.prices

    @property
    def addresses(self) -> AddressResolver:
        return self.live.addresses

    @property
    def naming(self) -> NamingRule:
        return self.live.naming

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
                      signer=signer, serving=serving)
        try:
            if redis.url:
                from keystead.state.notify import ChangeNotifier

                runtime.notifier = ChangeNotifier(redis.url, redis.prefix)
            await runtime.reload_keys()
            await runtime.reload_providers()
            runtime._versions[CONFIG_VERSION] = await store.get_version(CONFIG_VERSION)
        except Exception:
            await runtime.close()
            raise
        if serving:
            if config.tracing.enabled:
                from keystead.tracing.setup import Tracing  # OpenTelemetry only when on

                runtime.trace_with(Tracing(config.tracing))
            runtime.ledger.start()
            runtime.limiter.start()
            runtime.metrics.start()
            loop = asyncio.get_running_loop()
            runtime._watcher = loop.create_task(runtime._watch())
            runtime._refresher = loop.create_task(runtime._refresh_secrets_loop())
            if runtime.notifier is not None:
                runtime.notifier.listen(runtime._heard)  # a task the notifier owns
        return runtime

    def trace_with(self, tracing: Tracing) -> None:
        """Spans from now on: the data plane's per request, the router's per attempt."""
        self.tracing = tracing
        self.router.tracer = tracing.attempts

    async def reload_keys(self) -> None:
        self._versions[KEYS_VERSION] = await self.store.get_version(KEYS_VERSION)
        teams = {team.name: team for team in await self.store.list_teams()}
        self.keys.replace(await self.store.list_keys())
        self.teams = teams

    async def reload_providers(self) -> None:
        async with self._rebuilding:
            self._versions[PROVIDERS_VERSION] = await self.store.get_version(PROVIDERS_VERSION)
            live = self.live
            providers, status = await self.factory.build(live.config, live.providers,
                                                         live.provider_status)
            self._swap(replace(live, providers=providers, provider_status=status,
                               routes=RouteTable(live.config.routes, live.config.routing,
                                                 providers, previous=live.routes)))

    async def apply_config(self, loaded: LoadedConfig, digest: str) -> None:
        """Swap in a new config (already read and validated): providers, routes, prices, limits,
        trusted proxies, naming rule and breaker policy change in one step. Requests in flight
        keep the `Live` they started on."""
        async with self._rebuilding:
            providers, status = await self.factory.build(loaded.config, self.providers,
                                                         self.provider_status)
            live = build_live(loaded, digest, providers, status,
                              routes=RouteTable(loaded.config.routes, loaded.config.routing,
                                                providers, previous=self.live.routes))
            # From here to the end: no await, so no request sees half of it.
            self.limiter.reconfigure(loaded.config.limits)
            self.breakers.policy = loaded.config.routing.breaker
            self._swap(live)

    def _swap(self, live: Live) -> None:
        old, self.live = self.live, live
        self.generation += 1
        # Mock transports are per-provider; the shared HTTP transport stays open. A replaced
        # one may still carry requests that started before the swap: it is closed later.
        kept = {id(provider.transport) for provider in live.providers.providers.values()}
        retired = {id(p.transport): p.transport for p in old.providers.providers.values()
                   if p.transport is not self.http and id(p.transport) not in kept}
        if retired:
            task = asyncio.get_running_loop().create_task(
                self._close_later(live.config.server.upstream_timeout_s))
            self._retiring[task] = list(retired.values())

    async def _close_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)  # a request waits on its provider at most this long
        task = asyncio.current_task()
        assert task is not None
        for transport in self._retiring.pop(task, []):
            await transport.close()

    def forget_pending_key(self, provider: str, fingerprint: str) -> None:
        """An operator decided about this key (enable-key): a change of ours not yet written
        must not undo it."""
        self.factory.forget_pending_key(provider, fingerprint)

    async def refresh_secrets(self) -> bool:
        """Re-read every external provider key; rebuild the providers if one changed (True)."""
        changed = await self.factory.secrets_changed(self.provider_status)
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

    async def announce(self, name: str) -> bool:
        """Tell the other processes that `name` changed, this one having done its part already
        (a config reload). False: no notice went out (no Redis, or out of reach); the others
        still find the change at their next poll of the store, within a second."""
        self._versions[name] = await self.store.bump_version(name)
        if self.notifier is None:
            return False
        return await self.notifier.publish(name)

    async def _reload(self, name: str) -> None:
        if name == KEYS_VERSION:
            await self.reload_keys()
        elif name == PROVIDERS_VERSION:
            await self.reload_providers()
        elif name == CONFIG_VERSION:
            await self._reload_config("notice")

    async def _reload_config(self, trigger: str) -> None:
        """Another process asked every replica to re-read its config file. The notice and the
        poll may both bring the same request: it is answered once."""
        version = await self.store.get_version(CONFIG_VERSION)
        if version == self._versions.get(CONFIG_VERSION):
            return
        self._versions[CONFIG_VERSION] = version
        await self.reloader.reload(trigger)

    async def _heard(self, name: str) -> None:
        try:
            await self._reload(name)
        except Exception:
            log.exception("reloading %s after a change notice failed; the poll retries", name)

    async def _watch(self, interval: float = 1.0) -> None:
        # A database outage is logged once, then briefly, then when it is over: not a
        # traceback every second for as long as it lasts.
        outage = OutageLog(log, "reloading keys, providers or the config")
        while True:
            await asyncio.sleep(interval)
            try:
                for name, reload in ((KEYS_VERSION, self.reload_keys),
                                     (PROVIDERS_VERSION, self.reload_providers)):
                    if await self.store.get_version(name) != self._versions.get(name):
                        await reload()
                if await self.store.get_version(CONFIG_VERSION) \
                        != self._versions.get(CONFIG_VERSION):
                    await self._reload_config("poll")
                # Breakers other replicas opened or closed (a dict read without Redis).
                await self.breakers.refresh(self.routes.deployment_ids())
            except Exception as exc:
                outage.failed(exc)
            else:
                outage.ok()

    async def close(self) -> None:
        await self.metrics.close()
        for task in (self._watcher, self._refresher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for task, transports in list(self._retiring.items()):  # no request is left to use them
            task.cancel()
            for transport in transports:
                await transport.close()
        self._retiring.clear()
        await self.factory.close()  # the events of provider keys taken out just now
        try:
            await self.limiter.close()
            if self.notifier is not None:
                await self.notifier.close()
        except Exception:  # the ledger below must still be written
            log.exception("closing the limits or change notices failed")
        await self.ledger.close()
        if self.tracing is not None:
            await self.tracing.close()  # within tracing.timeout_s, whatever the collector does
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
