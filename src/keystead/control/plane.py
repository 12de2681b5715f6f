"""What the control services need of the process they run in (`ControlPlane`).

The services (keys, teams, events, usage, incidents, tokens, the vault) use the config, the
store, the vault, the key hasher, the naming rule and a way to tell every gateway that something
changed; nothing of the request line. Two things provide it: `Runtime` (the gateway and the
admin API, which has all of it and much more) and `StoreSession` (control/session.py: a CLI
command, which opens the same store and vault without the serving machinery, so it starts
without the HTTP client, the provider adapters, the limiter, the tokenizer or the price table).
Provider and route commands need the providers themselves and keep using `Runtime`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from keystead.config.load import LoadedConfig
    from keystead.config.model import Config
    from keystead.keys.hashing import KeyHasher
    from keystead.keys.naming import NamingRule
    from keystead.keys.tokens import TokenSigner
    from keystead.state.store import Store
    from keystead.vault.store import Vault

__all__ = ["ControlPlane", "Ledger"]


class Ledger(Protocol):
    async def flush(self) -> None:
        """Write the usage records this process has queued (reports must count them)."""


class ControlPlane(Protocol):
    # Read-only properties: a Runtime's plain attributes satisfy them.
    @property
    def loaded(self) -> LoadedConfig: ...
    @property
    def config(self) -> Config: ...
    @property
    def store(self) -> Store: ...
    @property
    def vault(self) -> Vault: ...
    @property
    def hasher(self) -> KeyHasher: ...
    @property
    def signer(self) -> TokenSigner | None: ...
    @property
    def naming(self) -> NamingRule: ...
    @property
    def ledger(self) -> Ledger: ...

    async def changed(self, name: str) -> None:
        """`name` (state/versions.py) changed: every gateway on the store reloads it."""
