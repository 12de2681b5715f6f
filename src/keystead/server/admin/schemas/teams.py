"""Teams: what the admin API takes and returns."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from keystead.server.admin.schemas.common import (
    ALLOWLIST,
    Allowlist,
    LimitsIn,
    LimitsOut,
    LimitsPatch,
)
from keystead.server.admin.schemas.fields import Line, Name, Text

__all__ = ["TeamCreate", "TeamOut", "TeamUpdate"]


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(description="Lowercase letters, digits and '-', e.g. payments.")
    description: Text | None = None
    owner: Line | None = Field(None, description="Contact of the team (email, Slack).")
    limits: LimitsIn | None = Field(None, description="Shared by all of the team's keys.")
    ip_allowlist: Allowlist | None = Field(None, max_length=1000, description=ALLOWLIST)


class TeamUpdate(BaseModel):
    """Only the fields sent change; null clears one (`limits`: every limit)."""

    model_config = ConfigDict(extra="forbid")
    description: Text | None = None
    owner: Line | None = None
    limits: LimitsPatch | None = None
    ip_allowlist: Allowlist | None = Field(None, max_length=1000, description=ALLOWLIST)


class TeamOut(BaseModel):
    name: str
    description: str | None
    owner: str | None
    limits: LimitsOut
    ip_allowlist: list[str] | None
    created_at: str | None
