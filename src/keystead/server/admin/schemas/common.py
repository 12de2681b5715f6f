"""What keys and teams share (limits, IP allowlists, the cache switch) and the error envelope."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keystead.server.admin.schemas.fields import Budget, Count, Line

__all__ = ["ALLOWLIST", "CACHE", "Allowlist", "ErrorBody", "ErrorEnvelope", "LimitsIn",
           "LimitsOut", "LimitsPatch"]

_COUNT = {"rpm": "Requests per minute.", "rpd": "Requests per day.",
          "tpm": "Tokens per minute (prompt + completion).", "tpd": "Tokens per day.",
          "max_parallel": "Requests in flight at once."}
_BUDGET = ("Spend cap per budget period, in USD. Send it as a string (\"12.50\") to keep "
           "every cent exact.")
ALLOWLIST = ("IPv4/IPv6 addresses or CIDRs; when set, requests from anywhere else are "
             "refused.")
CACHE = ("The response cache for this key: false never reads or writes it, true also uses "
         "routes whose cache is opt_in, null follows each route.")

Allowlist = list[Line]


class LimitsIn(BaseModel):
    """Limits of a key or a team. An absent or null limit: none at this scope."""

    model_config = ConfigDict(extra="forbid")
    rpm: Count | None = Field(None, description=_COUNT["rpm"])
    rpd: Count | None = Field(None, description=_COUNT["rpd"])
    tpm: Count | None = Field(None, description=_COUNT["tpm"])
    tpd: Count | None = Field(None, description=_COUNT["tpd"])
    max_parallel: Count | None = Field(None, description=_COUNT["max_parallel"])
    budget_usd: Budget | None = Field(None, description=_BUDGET)
    budget_period: Literal["day", "month"] = "month"


class LimitsPatch(LimitsIn):
    """Only the limits sent change; null clears one."""

    budget_period: Literal["day", "month"] | None = Field(  # type: ignore[assignment]
        None, description="When the budget resets; null: back to month.")


class LimitsOut(BaseModel):
    rpm: int | None
    rpd: int | None
    tpm: int | None
    tpd: int | None
    max_parallel: int | None
    budget_usd: str | None = Field(description="Decimal text, e.g. \"12.50\".")
    budget_period: Literal["day", "month"]


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    error: ErrorBody
