"""`metrics:` the Prometheus endpoint (docs/monitoring.md)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from keystead.config.strict import Strict

__all__ = ["MetricsConfig"]


class MetricsConfig(Strict):
    enabled: bool = True
    # A bearer token for GET /metrics (a reference: ${VAR}); None: open to whoever reaches it.
    token: SecretStr | None = None
    # Values each label may take before the rest are counted as "other" (bounded cardinality).
    max_label_values: int = Field(100, ge=1, le=10_000)
