"""Synthetic checks: which targets to check, and what each check found."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from keystead.server.admin.schemas.fields import Line, Name, Text

__all__ = ["CheckOut", "CheckRequest", "CheckRun"]


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    providers: list[Name] = Field(
        default_factory=list, max_length=100,
        description="Check these providers' keys; with only routes named, none.")
    routes: list[Name] = Field(
        default_factory=list, max_length=100,
        description="Check these routes; with only providers named, none. Neither: the "
                    "config's checks.providers and checks.routes, else everything.")


class CheckOut(BaseModel):
    target: Line = Field(description="provider:<name>#<label>, provider:<name> or "
                                     "route:<name>")
    kind: Name
    ok: bool
    status: int | None = Field(None, description="The provider's HTTP status; null: no answer.")
    error: Line | None = Field(None, description="http_401, timeout, unreachable, ...")
    detail: Text
    latency_ms: float
    checked_at: Line
    model: Line | None = None
    deployment: Line | None = None
    rate_limits: dict[str, str] = Field(description="x-ratelimit-*, anthropic-ratelimit-*, "
                                                    "retry-after")
    cost_usd: Line


class CheckRun(BaseModel):
    ok: bool = Field(description="Every check passed.")
    results: list[CheckOut]
