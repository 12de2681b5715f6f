"""The usage report."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["UsageReport", "UsageRowOut"]


class UsageRowOut(BaseModel):
    group: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: str
    avg_latency_ms: float
    retries: int = Field(0, description="Attempts beyond the first (routes).")
    fallbacks: int = Field(0, description="Requests a fallback tier answered.")
    cache_hits: int = 0
    saved_usd: str = Field("0", description="What cache hits would have cost.")
    schema_checked: int = Field(0, description="Structured answers validated.")
    schema_invalid: int = Field(0, description="... of which handed over invalid.")
    degraded: int = Field(0, description="Answered in degraded mode (cached or static).")


class UsageReport(BaseModel):
    by: str
    since: str
    filters: dict[str, str] = Field(description="The filters applied, by dimension.")
    rows: list[UsageRowOut]
