"""What the rules share: how a key, an amount and a time are written in an alert."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from keystead.state.records import KeyRecord

__all__ = ["iso", "key_where", "usd"]


def key_where(key: KeyRecord | None, key_id: str) -> dict[str, str]:
    if key is None:
        return {"key_id": key_id}
    where = {"key_id": key.id, "key": key.name, "env": key.env}
    if key.team:
        where["team"] = key.team
    if key.owner:
        where["owner"] = key.owner
    return where


def usd(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.01'))}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
