"""Alerts: what /admin/alerts takes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from keystead.server.admin.schemas.fields import Duration, Line, Name

__all__ = ["AlertTest", "SilenceIn"]


class AlertTest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Name | None = Field(None, description="Only this channel (default: every one).")


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: Line = Field(description="A rule (`budget`) or one alert (`rule:subject`, as "
                                     "GET /admin/alerts shows it).")
    duration: Duration = Field(alias="for", description="How long, e.g. 2h, 1d (at most 90d).")
    reason: Line | None = Field(None, max_length=500)
