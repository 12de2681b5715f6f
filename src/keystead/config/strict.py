"""The base of every config section: unknown keys refused (a misspelt option fails the start
instead of being silently ignored), values frozen once loaded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Strict"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
