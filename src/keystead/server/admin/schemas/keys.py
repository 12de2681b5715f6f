"""Keys, their incidents and their short-lived tokens: what the admin API takes and returns."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keystead.server.admin.schemas.common import (
    ALLOWLIST,
    CACHE,
    Allowlist,
    LimitsIn,
    LimitsOut,
    LimitsPatch,
)
from keystead.server.admin.schemas.fields import (
    Count,
    Duration,
    Line,
    MaxBodyBytes,
    MaxTokens,
    Name,
    Text,
)

__all__ = ["IncidentIn", "KeyCreate", "KeyCreated", "KeyOut", "KeyUpdate", "Revoke", "Rotate",
           "TokenMint"]

_ENDPOINTS = ("Allowed endpoints: chat.completions, embeddings, responses, models, messages "
              "(Anthropic's /v1/messages, count_tokens included).")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(description="Follows the naming rule, e.g. prod-webhook-bot-01.")
    env: Name | None = Field(None, description="Defaults to the environment in the name.")
    team: Name | None = None
    owner: Line | None = Field(None, description="Contact of the key's owner (email, Slack).")
    description: Text | None = None
    models: list[Name] | None = Field(None, max_length=1000,
                                      description="Allowed models; patterns like gpt-4o*.")
    endpoints: list[Name] | None = Field(None, max_length=32, description=_ENDPOINTS)
    max_tokens: MaxTokens | None = None
    max_body_bytes: MaxBodyBytes | None = None
    expires: Duration | None = Field(None, description="Lifetime such as 30d, 12h.")
    limits: LimitsIn | None = None
    ip_allowlist: Allowlist | None = Field(None, max_length=1000, description=ALLOWLIST)
    cache: bool | None = Field(None, description=CACHE)


class KeyUpdate(BaseModel):
    """Only the fields sent change; null clears one (`expires`: never expires,
    `ip_allowlist`: any address, `limits`: every limit, `cache`: follow the route)."""

    model_config = ConfigDict(extra="forbid")
    team: Name | None = Field(None, description="Must exist.")
    owner: Line | None = None
    description: Text | None = None
    models: list[Name] | None = Field(None, max_length=1000,
                                      description="Allowed models; null: every model.")
    endpoints: list[Name] | None = Field(None, max_length=32,
                                         description="Allowed endpoints; null: all.")
    max_tokens: MaxTokens | None = None
    max_body_bytes: MaxBodyBytes | None = None
    expires: Duration | None = Field(None, description="New lifetime from now, such as 30d.")
    limits: LimitsPatch | None = None
    ip_allowlist: Allowlist | None = Field(None, max_length=1000, description=ALLOWLIST)
    cache: bool | None = Field(None, description=CACHE)


class KeyOut(BaseModel):
    id: str
    name: str
    status: Literal["active", "disabled", "revoked", "expired"]
    env: str
    team: str | None
    owner: str | None
    description: str | None
    models: list[str] | None
    endpoints: list[str] | None
    max_tokens: int | None
    max_body_bytes: int | None
    cache: bool | None = Field(description=CACHE)
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    revoked_reason: str | None
    last_used_at: str | None  # the order of key_view, so --server prints what embedded does
    disabled_at: str | None
    limits: LimitsOut
    ip_allowlist: list[str] | None
    rotated_at: str | None
    rotation_due_at: str | None = Field(description="When keys.rotate_every wants it rotated.")
    previous_key_expires_at: str | None = Field(
        description="Until then the text a rotation replaced still works (the grace period).")


class KeyCreated(KeyOut):
    key: str = Field(description="The key text. Shown once: keystead stores only its hash.")


class IncidentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: Line = Field(description="The key's id, its name, or the leaked text itself.")
    reason: Text | None = Field(None, description="Stored, logged and posted with any secret "
                                                  "in it masked.")
    replace: bool = Field(True, description="Issue a replacement (same scopes, limits, budget); "
                                            "false: revoke only.")


class TokenMint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: Name = Field(description="The parent key's id or name.")
    ttl: Duration | None = Field(None, description="Lifetime, e.g. 15m (default "
                                                   "tokens.default_ttl, at most tokens.max_ttl).")
    models: list[Name] | None = Field(None, max_length=1000,
                                      description="Narrower than the key's; default its.")
    rpm: Count | None = None
    tpm: Count | None = None
    max_tokens: MaxTokens | None = None
    user: Name | None = Field(None, description="The end user it is for (in the log line).")


class Rotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace: Duration = Field("24h", description="How long the old text keeps working, e.g. 24h; "
                                               "0s: refused at once (a leak).")


class Revoke(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text | None = Field(None, description="Stored with any secret in it masked.")
