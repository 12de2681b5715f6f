"""The store's change counters: a process that changes keys or providers bumps one, and every
gateway that sees it move reloads what it names (`Runtime`, and `StoreSession.changed`)."""

from __future__ import annotations

__all__ = ["KEYS_VERSION", "PROVIDERS_VERSION"]

KEYS_VERSION = "keys"  # keys and teams: both shape the policy of a request
PROVIDERS_VERSION = "providers"
