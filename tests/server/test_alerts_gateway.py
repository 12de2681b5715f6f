"""Alerts inside a running gateway: a refused key's 401s name it on the ledger (never an id the
key table does not know), the engine turns a burst of them into one alert, key sources are
recorded by the ledger writer, and /admin/alerts lists, tests and silences."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from keystead.alerts.engine import AlertEngine
from keystead.keys.format import _checksum, parse_key
from support import AppClient, make_loaded, running_app

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
RAW = {"alerts": {"evaluate_every": "1h",  # the test calls evaluate() itself
                  "rules": {"auth_failures": {"window": "1m", "min_count": 3},
                            "unused_key": {"enabled": False}}}}


def run_app(tmp_path: Path, test: Any, raw: dict[str, Any] | None = None) -> None:
    loaded = make_loaded(tmp_path, raw=raw or RAW)

    async def main() -> None:
        async with running_app(loaded) as client:
            await asyncio.wait_for(test(client), 60)

    asyncio.run(main())


def test_refused_key_texts_name_known_keys_only(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-web-chat")
        key_id = parse_key(key).key_id  # type: ignore[union-attr]
        await client.admin("POST", f"/admin/keys/{key_id}/revoke", {"reason": "leaked"})

        def forged(key_id: str) -> str:  # a valid checksum is no proof of anything
            body = f"ksk_{key_id}" + "A" * 32
            return body + _checksum(body)

        wrong_secret, forged_unknown = forged(key_id), forged("zzzzzzzz")
        assert parse_key(wrong_secret) and parse_key(forged_unknown)
        for text in (key, key, wrong_secret, forged_unknown):
            reply = await client.request("POST", "/v1/chat/completions", json_body=CHAT,
                                         key=text)
            assert reply.status == 401
        await client.runtime.ledger.flush()
        rows = await client.runtime.store.recent_usage(10)
        named = [r.key_id for r in rows if r.status == 401]
        assert named.count(key_id) == 3
        assert all(r.key_name is None for r in rows)  # not taken for an authenticated request
        record = await client.runtime.store.get_key(key_id)
        assert record is not None and record.last_used_at is None  # 401s are not a use

        engine = AlertEngine(client.runtime, channels=lambda _c: [])
        [fired] = await engine.evaluate()
        assert fired.alert.rule == "auth_failures" and fired.alert.subject == f"key:{key_id}"
        assert fired.alert.numbers["key_status"] == "revoked"
        assert await engine.evaluate() == []
        await engine.drain()
        [event] = await client.runtime.store.list_events(1, kind="alert.firing")
        assert event.key_id == key_id
        listed = (await client.admin("GET", "/admin/alerts")).json()
        [row] = [r for r in listed if r["rule"] == "auth_failures"]
        assert row["state"] == "firing" and row["subject"] == f"key:{key_id}"

    run_app(tmp_path, test)


def test_the_ledger_writer_records_each_new_source_once(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        key = await client.create_key("prod-web-chat")
        key_id = parse_key(key).key_id  # type: ignore[union-attr]
        for address, agent in (("203.0.113.7", "OpenAI/Python 1.54.0"),
                               ("203.0.113.99", "OpenAI/Python 1.55.1"),
                               ("198.51.100.1", "curl/8.5.0")):
            reply = await client.request("POST", "/v1/chat/completions", json_body=CHAT,
                                         key=key, client=(address, 5000),
                                         headers={"user-agent": agent})
            assert reply.status == 200
        await client.runtime.ledger.flush()
        found = await client.runtime.store.new_key_sightings(since=0)
        assert sorted((s.kind, s.value) for s, _first, _n in found) == [
            ("net", "198.51.100.0/24"), ("net", "203.0.113.0/24"), ("ua", "curl"),
            ("ua", "openai/python")]
        assert {s.key_id for s, _f, _n in found} == {key_id}

    run_app(tmp_path, test)


def test_admin_api_silences_and_tests(tmp_path: Path) -> None:
    async def test(client: AppClient) -> None:
        made = await client.admin("POST", "/admin/alerts/silences",
                                  {"target": "budget", "for": "2h", "reason": "month end"})
        assert made.status == 201, made.body
        listed = (await client.admin("GET", "/admin/alerts")).json()
        [row] = [r for r in listed if r["rule"] == "budget"]
        assert row["state"] == "ok" and row["silenced_until"] is not None
        assert [r["state"] for r in listed if r["rule"] == "unused_key"] == ["off"]
        for bad in ({"target": "nope", "for": "2h"}, {"target": "budget", "for": "100d"},
                    {"target": "budget:\x00", "for": "1h"}, {"target": "budget", "for": "x"}):
            assert (await client.admin("POST", "/admin/alerts/silences", bad)).status == 400
        gone = await client.admin("DELETE", "/admin/alerts/silences?target=budget")
        assert gone.status == 200
        assert (await client.admin("DELETE", "/admin/alerts/silences?target=budget")).status == 404
        # no channels configured: a clear 400
        reply = await client.admin("POST", "/admin/alerts/test", {})
        assert reply.status == 400 and "alerts.channels" in reply.body.decode()

    run_app(tmp_path, test)


def test_the_engine_runs_in_the_gateway_and_stops_with_it(tmp_path: Path) -> None:
    raw = {"alerts": {"evaluate_every": "1s", "rules": {"unused_key": {"after": "1m"}}}}

    async def test(client: AppClient) -> None:
        engine = client.app.alerts
        assert engine is not None
        key = await client.create_key("prod-web-chat")
        key_id = parse_key(key).key_id  # type: ignore[union-attr]
        # backdate the key: unused for two minutes
        await client.runtime.store.update_key(key_id, created_at=time.time() - 120)
        for _ in range(50):
            if await client.runtime.store.list_alerts():
                break
            await asyncio.sleep(0.1)
        [alert] = await client.runtime.store.list_alerts()
        assert alert.rule == "unused_key" and alert.subject == f"key:{key_id}"

    run_app(tmp_path, test, raw)


def test_budget_crossings_from_the_rollups_then_a_raise_resolves(tmp_path: Path) -> None:
    from decimal import Decimal

    from keystead.state.records import UsageRecord

    raw = {"alerts": {"evaluate_every": "1h", "rules": {"unused_key": {"enabled": False},
                                                         "spend_spike": {"enabled": False}}}}

    async def test(client: AppClient) -> None:
        made = await client.admin("POST", "/admin/teams", {
            "name": "web", "limits": {"budget_usd": "10", "budget_period": "day"}})
        assert made.status == 201, made.body
        key = await client.create_key("prod-web-chat", team="web",
                                      limits={"budget_usd": "4"})
        key_id = parse_key(key).key_id  # type: ignore[union-attr]
        await client.runtime.store.insert_usage([UsageRecord(
            request_id="r1", ts=time.time(), endpoint="chat.completions", status=200,
            key_id=key_id, key_name="prod-web-chat", team="web", env="dev",
            cost_usd=Decimal("5.5"))])
        engine = AlertEngine(client.runtime, channels=lambda _c: [])
        fired = sorted(t.alert.subject for t in await engine.evaluate())
        day = time.strftime("%Y-%m-%d", time.gmtime())
        month = time.strftime("%Y-%m", time.gmtime())
        assert fired == [f"key:{key_id}:{month}:100", f"key:{key_id}:{month}:50",
                         f"key:{key_id}:{month}:80", f"team:web:{day}:50"]
        await client.admin("PATCH", "/admin/teams/web", {"limits": {"budget_usd": "100"}})
        resolved = [t.alert.subject for t in await engine.evaluate() if t.kind == "resolved"]
        assert resolved == [f"team:web:{day}:50"]
        await engine.drain()

    run_app(tmp_path, test, raw)
