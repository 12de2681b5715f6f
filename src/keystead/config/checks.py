"""`checks:` synthetic requests through every provider key and route (docs/monitoring.md)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from keystead.config.strict import Strict

__all__ = ["CHECK_EVERY_MAX_S", "CHECK_EVERY_MIN_S", "ChecksConfig"]

# A period shorter than this spends tokens for nothing; longer than a day is no check at all.
CHECK_EVERY_MIN_S = 10.0
CHECK_EVERY_MAX_S = 86_400.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}")


class ChecksConfig(Strict):
    # How often the gateway runs them itself ("5m"); None: only `keystead check` runs them.
    every: str | None = None
    # How long one target may take (the provider's own read timeout may be longer).
    timeout: str = "30s"
    # Which providers and routes to check; None: all of them, [] none.
    providers: tuple[str, ...] | None = None
    routes: tuple[str, ...] | None = None
    # The probe's output cap: one token is enough to prove the model answers.
    max_tokens: int = Field(1, ge=1, le=64)
    # Each check's tokens and cost go to the usage ledger (feature `synthetic-check`, no key,
    # no team: no budget is charged); false leaves them out of the ledger.
    record_cost: bool = True
    # Targets checked at the same time.
    concurrency: int = Field(4, ge=1, le=32)

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        if value is None:
            return None
        seconds = _seconds(value)
        if not CHECK_EVERY_MIN_S <= seconds <= CHECK_EVERY_MAX_S:
            raise ValueError(f"must be between {CHECK_EVERY_MIN_S:g}s and 1d, not {value!r}")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        if not 0.1 <= _seconds(value) <= 600:
            raise ValueError(f"must be between 0.1s and 600s, not {value!r}")
        return value

    @field_validator("providers", "routes")
    @classmethod
    def _names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name[:40]!r} is not a provider or route name")
        return value

    @property
    def every_s(self) -> float | None:
        return _seconds(self.every) if self.every is not None else None

    @property
    def timeout_s(self) -> float:
        return _seconds(self.timeout)


def _seconds(text: str) -> float:
    from keystead.durations import parse_duration  # stdlib only

    return parse_duration(text)
