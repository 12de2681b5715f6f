"""The audit trail: every key change, rotation, revocation and incident is an event (never the
key text), and rotation reminders are recorded once per key and due date."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from keystead.control.events import EventService
from keystead.keys.format import parse_key
from support import AppClient, make_loaded, running_app


def run_app(tmp_path: Path, test: Any, raw: dict[str, Any] | None = None) -> None:
    loaded = make_loaded(tmp_path, raw=raw)

    async def main() -> None:
        async with running_app(loaded) as client:
            await asyncio.wait_for(test(client), 30)

    asyncio.run(main())


def test_key_changes_and_incidents_are_audited_without_key_text(tmp_path):
    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-support-bot-01")
        key_id = parse_key(key).key_id  # type: ignore[union-attr]
        await client.admin("PATCH", f"/admin/keys/{key_id}", {"owner": "ana@example.com"})
        await client.admin("POST", f"/admin/keys/{key_id}/disable")
        await client.admin("POST", f"/admin/keys/{key_id}/enable")
        rotated = (await client.admin("POST", f"/admin/keys/{key_id}/rotate")).json()["key"]
        incident = await client.admin("POST", "/admin/incidents",
                                      {"key": rotated, "reason": "ticket 4711"})
        assert incident.status == 200
        reply = await client.admin("GET", f"/admin/events?key={key_id}")
        assert reply.status == 200
        events = reply.json()
        assert [e["kind"] for e in events] == ["incident", "key.rotated", "key.rotated",
                                               "key.enabled", "key.disabled", "key.updated",
                                               "key.created"]
        assert all(e["actor"] == "admin-api" for e in events)
        assert events[0]["detail"]["reason"] == "ticket 4711"
        assert events[0]["detail"]["action"] == "rotated"
        assert events[5]["detail"]["fields"] == ["owner"]
        text = json.dumps(events)
        assert key not in text and rotated not in text
        assert incident.json()["new_key"] not in text
        only = (await client.admin("GET", "/admin/events?kind=incident&since=1h")).json()
        assert [e["kind"] for e in only] == ["incident"]
        bad = await client.admin("GET", "/admin/events?since=soon")
        assert bad.status == 400

    run_app(tmp_path, test)


def test_rotation_reminders_are_recorded_once_per_due_date(tmp_path):
    async def test(client: AppClient) -> None:
        rt = client.runtime
        await client.create_key("prod-support-bot-01", owner="ana@example.com")
        await client.create_key("dev-support-bot-01")  # dev has no policy
        service = EventService(rt)
        assert await service.remind() == []  # due in 30 days, reminded 7 days before
        later = time.time() + 24 * 86400
        (first,) = await service.remind(now=later)
        assert first.kind == "key.rotation_due" and first.detail["owner"] == "ana@example.com"
        assert first.detail["overdue"] is False
        assert await service.remind(now=later + 3600) == []  # once per due date
        await client.admin("POST", "/admin/keys/prod-support-bot-01/rotate", {"grace": "0s"})
        # Rotated: due 30 days from now, so nothing to remind of 20 days from now.
        assert await service.remind(now=time.time() + 20 * 86400) == []
        (second,) = await service.remind(now=time.time() + 25 * 86400)
        assert second.detail["due_at"] > first.detail["due_at"]

    run_app(tmp_path, test, {"keys": {"rotate_every": {"prod": "30d"}}})
