"""`tracing:` OpenTelemetry traces over OTLP/HTTP (docs/monitoring.md)."""

from __future__ import annotations

from pydantic import Field

from keystead.config.strict import Strict

__all__ = ["TracingConfig"]


class TracingConfig(Strict):
    enabled: bool = False
    # The collector's OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces
    endpoint: str | None = None
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    service_name: str = "keystead"
