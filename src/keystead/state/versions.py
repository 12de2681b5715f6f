"""The store's change counters: a process that changes keys or providers bumps one, and every
gateway that sees it move reloads what it names (`Runtime`, and `StoreSession.changed`)."""

from __future__ import annotations

__all__ = ["CONFIG_VERSION", "KEYS_VERSION", "PROVIDERS_VERSION", "reload_asked"]

KEYS_VERSION = "keys"  # keys and teams: both shape the policy of a request
PROVIDERS_VERSION = "providers"
CONFIG_VERSION = "config"  # every gateway re-reads its own config file (reload.py)


def reload_asked(at_once: bool) -> str:
    """How the other gateways were asked to reload, as `keystead reload` prints it."""
    return "asked at once (Redis notice)" if at_once \
        else "asked through the store (they re-read within a second)"
