"""The audit trail and notices: list events; record rotation reminders before keys fall due."""

from __future__ import annotations

import builtins
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keystead.control.keys import KeyService
from keystead.durations import parse_duration
from keystead.state.records import EventRecord

if TYPE_CHECKING:
    from keystead.control.plane import ControlPlane

__all__ = ["EventService", "event_view"]

REMINDER = "key.rotation_due"


def event_view(event: EventRecord) -> dict[str, Any]:
    return {"id": event.id, "ts": datetime.fromtimestamp(event.ts, UTC).isoformat(
        timespec="seconds"), "kind": event.kind, "key_id": event.key_id, "actor": event.actor,
            "detail": event.detail}


class EventService:
    def __init__(self, runtime: ControlPlane):
        self.rt = runtime

    async def list(self, *, key: str | None = None, kind: str | None = None,
                   since_s: float | None = None, limit: int = 100) -> list[EventRecord]:
        key_id = (await KeyService(self.rt).get(key)).id if key else None
        since = time.time() - since_s if since_s is not None else None
        return await self.rt.store.list_events(limit, key_id=key_id, kind=kind, since=since)

    async def remind(self, now: float | None = None) -> builtins.list[EventRecord]:
        """A `key.rotation_due` event for every key whose rotation falls due within
        keys.remind_before, once per key and due date (the alerts issue sends them on)."""
        now = time.time() if now is None else now
        window = parse_duration(self.rt.config.keys.remind_before)
        keys = KeyService(self.rt, actor="gateway")
        recorded: builtins.list[EventRecord] = []
        for record in await keys.due(window + (now - time.time())):
            due_at = keys.rotation_due_at(record)
            if due_at is None:
                continue
            earlier = await self.rt.store.list_events(50, key_id=record.id, kind=REMINDER)
            if any(e.detail.get("due_at") == round(due_at, 3) for e in earlier):
                continue
            event = EventRecord(kind=REMINDER, ts=now, key_id=record.id, actor="gateway",
                                detail={"name": record.name, "due_at": round(due_at, 3),
                                        "overdue": due_at <= now, "owner": record.owner,
                                        "team": record.team})
            await self.rt.store.insert_event(event)
            recorded.append(event)
        return recorded
