"""`StoreSession`: the store and vault of a config, opened for one CLI command.

It is a `ControlPlane` (control/plane.py) without the serving machinery of `Runtime`: no
counters, limiter, providers, routes, cache or ledger writer, so a command such as `keys list`
imports the config, the store and the vault and nothing of the request line. A change it makes
reaches running gateways the way a gateway's own does: the store's change counter moves (they
poll it every second) and, with Redis, a change notice reaches them at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keystead.keys.hashing import KeyHasher
from keystead.keys.naming import NamingRule
from keystead.keys.tokens import TokenSigner
from keystead.state.sql_store import SQLStore
from keystead.vault.store import Vault, load_master_key

if TYPE_CHECKING:
    from keystead.config.load import LoadedConfig
    from keystead.state.notify import ChangeNotifier
    from keystead.state.store import Store

__all__ = ["StoreSession"]


class _NothingQueued:
    """A command's ledger: it serves no request, so it never has usage records queued."""

    async def flush(self) -> None:
        return None


class StoreSession:
    def __init__(self, loaded: LoadedConfig, store: Store, vault: Vault, pepper: bytes,
                 notifier: ChangeNotifier | None = None):
        self.loaded = loaded
        self.config = loaded.config
        self.store = store
        self.vault = vault
        self.hasher = KeyHasher(pepper)
        self.signer: TokenSigner | None = TokenSigner(pepper)
        keys = self.config.keys
        self.naming = NamingRule(keys.name_pattern, keys.name_rule, keys.environments)
        self.ledger = _NothingQueued()
        self._notifier = notifier

    @classmethod
    async def open(cls, loaded: LoadedConfig) -> StoreSession:
        config = loaded.config
        key_file = config.vault.master_key_file
        master = load_master_key(
            config.vault.master_key.get_secret_value() if config.vault.master_key else None,
            loaded.resolve_path(key_file) if key_file else None)
        store = SQLStore(loaded.store_url())
        await store.open()
        try:
            vault = Vault(store, master)
            pepper = await vault.pepper()  # also proves the master key is the vault's
            notifier = None
            if config.redis.url:
                # Imported only when configured, as in Runtime: the default never loads redis-py.
                from keystead.state.notify import ChangeNotifier

                notifier = ChangeNotifier(config.redis.url, config.redis.prefix)
        except BaseException:
            await store.close()
            raise
        return cls(loaded, store, vault, pepper, notifier)

    async def changed(self, name: str) -> None:
        await self.announce(name)

    async def announce(self, name: str) -> bool:
        """Bump `name`'s change counter (every gateway polls it) and publish a notice; True
        when the notice went out at once (Redis)."""
        await self.store.bump_version(name)
        if self._notifier is None:
            return False
        return await self._notifier.publish(name)  # False (logged) when Redis is out of reach

    async def close(self) -> None:
        try:
            if self._notifier is not None:
                await self._notifier.close()
        finally:
            await self.store.close()
