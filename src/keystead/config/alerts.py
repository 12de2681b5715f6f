"""`alerts:` rules evaluated in the background and where they are sent (docs/monitoring.md)."""

from __future__ import annotations

from keystead.config.strict import Strict

__all__ = ["AlertsConfig"]


class AlertsConfig(Strict):
    enabled: bool = True
