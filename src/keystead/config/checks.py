"""`checks:` synthetic requests through every provider key and route (docs/monitoring.md)."""

from __future__ import annotations

from keystead.config.strict import Strict

__all__ = ["ChecksConfig"]


class ChecksConfig(Strict):
    # How often the gateway runs them itself ("5m"); None: only `keystead check` runs them.
    every: str | None = None
