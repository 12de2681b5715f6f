"""Providers and their key pools: what the admin API takes and returns. Keys go in, never out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keystead.server.admin.schemas.fields import LongLine, Name

__all__ = ["ProviderCreate", "ProviderKey", "ProviderKeyAdd", "ProviderKeyOut",
           "ProviderKeyTest", "ProviderOut", "ProviderTest"]

_REFS = "env:VAR, file:PATH, aws-sm:SECRET_ID[#FIELD], hcvault:MOUNT/PATH#FIELD"


class ProviderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    type: Literal["openai", "azure", "openai-compatible", "mock", "anthropic", "gemini"]
    base_url: LongLine | None = None
    api_key_env: Name | None = Field(None, description="Read the key from this variable.")
    api_key: LongLine | None = Field(None, description="Sealed into the vault; never returned.")
    api_key_ref: LongLine | None = Field(
        None, description=f"A reference to an external store: {_REFS}.")
    api_keys: list[LongLine] | None = Field(
        None, max_length=100,
        description="Several keys (a pool, labelled #1, #2, ... in this order), each sealed "
                    "into the vault; never returned.")
    api_key_refs: list[LongLine] | None = Field(
        None, max_length=100, description="Several keys (a pool) as references to external "
                                          "stores.")
    models: list[Name] = Field(default_factory=list, max_length=1000)
    deployments: dict[Name, Name] = Field(default_factory=dict, max_length=1000)
    api_version: Name | None = None
    supports_responses: bool | None = None


class ProviderKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: LongLine = Field(description="The new key; sealed into the vault, never returned.")
    label: Name | None = Field(None, description="Which key of a pool to replace (`2` or `#2`); "
                                                 "needed when the provider has several.")


class ProviderKeyAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: LongLine | None = Field(None, description="Sealed into the vault; never returned.")
    api_key_ref: LongLine | None = Field(
        None, description=f"Or a reference to an external store: {_REFS}.")


class ProviderKeyOut(BaseModel):
    label: str = Field(description="#1, #2, ...: the key's place in the provider's keys.")
    source: str = Field(description="Where it lives: vault, a reference, or config.")
    fingerprint: str | None = Field(
        description="The first 12 hex characters of the key's sha256; never the key.")
    state: Literal["active", "cooling", "disabled", "unusable"] = Field(
        description="active: in rotation; cooling: rate-limited (429), the other keys go first "
                    "until `until`; disabled: refused by the provider (401/403), out of "
                    "rotation; unusable: cannot be read.")
    since: str | None
    until: str | None
    reason: str | None


class ProviderOut(BaseModel):
    name: str
    type: str
    base_url: str | None
    source: Literal["config", "store"]
    api_key: str | None = Field(description="Where the key lives: env:VAR, vault or config "
                                            "(for a pool, each key's, comma separated).")
    models: list[str]
    deployments: dict[str, str]
    api_version: str | None
    status: Literal["ok", "unusable"]
    error: str | None
    keys: list[ProviderKeyOut] = Field(description="Its keys and their states (a pool).")


class ProviderKeyTest(BaseModel):
    label: str
    fingerprint: str | None
    state: str
    ok: bool
    status: int | None
    latency_ms: float | None
    detail: str


class ProviderTest(BaseModel):
    name: str
    ok: bool = Field(description="Every key works.")
    status: int | None
    latency_ms: float | None
    detail: str
    keys: list[ProviderKeyTest] = Field(default_factory=list, description="Each key's result.")
