"""A channel sends one message or raises `DeliveryFailed` with a reason a person can read (and
that never holds the channel's URL or secret). `deliver` adds the timeout and the retries."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

from keystead.alerts.messages import Message

__all__ = ["Channel", "DeliveryFailed", "deliver"]

log = logging.getLogger("keystead.alerts")


class DeliveryFailed(Exception):
    """The channel did not take the message; the text says why (no URL, no secret)."""


class Channel(Protocol):
    name: str
    rules: tuple[str, ...] | None  # None: every rule

    async def send(self, message: Message, timeout_s: float) -> None: ...


def takes(channel: Channel, rule: str) -> bool:
    return rule == "test" or channel.rules is None or rule in channel.rules


async def deliver(channel: Channel, message: Message, *, timeout_s: float, retries: int,
                  backoff_s: float = 1.0,
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> str:
    """"sent", or "failed: <why>" after 1 + `retries` attempts (exponential backoff with
    jitter). The failure is logged once, here."""
    reason = "not tried"
    for attempt in range(retries + 1):
        try:
            # The channel has its own timeout; this one also covers a receiver that trickles.
            await asyncio.wait_for(channel.send(message, timeout_s), timeout_s + 1.0)
            return "sent"
        except DeliveryFailed as exc:
            reason = str(exc)
        except TimeoutError:
            reason = f"no answer within {timeout_s:g}s"
        except Exception as exc:  # a channel's bug must not end the delivery of the others
            reason = type(exc).__name__
        if attempt < retries:
            await sleep(min(60.0, backoff_s * 2 ** attempt) * random.uniform(0.5, 1.0))
    log.error("alert %s %s:%s not delivered to channel %s after %d attempts: %s",
              message.kind, message.alert.rule, message.alert.subject, channel.name,
              retries + 1, reason)
    return f"failed: {reason}"
