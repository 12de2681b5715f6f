"""The trace headers an upstream request carries (`traceparent`, `tracestate`).

The attempt span sets them around its try (a context variable: one request, one task) and
`Provider.send` adds them to every request it sends for the try. Nothing here imports
OpenTelemetry: with tracing off the variable stays at its default, None.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

__all__ = ["TRACE_HEADERS"]

TRACE_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar("keystead_trace_headers",
                                                                 default=None)
