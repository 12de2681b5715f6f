"""An alert source on a real store (SQLite in tmp_path): the config and the store, nothing of
the serving machinery."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from keystead.alerts.messages import Message
from keystead.config.alerts import RULE_NAMES
from keystead.config.model import Config
from keystead.state.sql_store import SQLStore


@dataclass
class Source:
    config: Config
    store: SQLStore


@dataclass
class Recorder:
    """A channel that keeps what it was sent (and can hang or fail)."""

    name: str = "rec"
    rules: tuple[str, ...] | None = None
    sent: list[Message] = field(default_factory=list)
    hang: bool = False
    fail: bool = False

    async def send(self, message: Message, timeout_s: float) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail:
            from keystead.alerts.channels import DeliveryFailed

            raise DeliveryFailed("HTTP 503")
        self.sent.append(message)


def alerts_config(**alerts: Any) -> Config:
    # every rule off but the one the engine tests drive (check_failing)
    off = {name: {"enabled": False} for name in RULE_NAMES if name != "check_failing"}
    rules = {**off, **alerts.pop("rules", {})}
    return Config.model_validate({"alerts": {"rules": rules, **alerts}})

