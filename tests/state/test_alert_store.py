"""The alert tables on SQLite and PostgreSQL: each transition is won by exactly one writer."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from keystead.state.records import AlertRecord, KeySighting, SilenceRecord, UsageRecord
from keystead.state.sql_store import SQLStore


def _alert(now: float, subject: str = "key:abc") -> AlertRecord:
    return AlertRecord(rule="auth_failures", subject=subject, state="firing", fired_at=now,
                       title="12 refused requests", detail={"where": {"key_id": "abc"}})


def test_fire_and_resolve_are_won_once_by_concurrent_stores(store: SQLStore) -> None:
    async def main() -> None:
        await store.open()
        others = [SQLStore(store.url) for _ in range(2)]
        for other in others:
            await other.open()
        everyone = [store, *others]
        try:
            fired = await asyncio.gather(*(s.fire_alert(_alert(1000.0), 60.0)
                                           for s in everyone for _ in range(3)))
            assert sum(fired) == 1
            assert not await store.fire_alert(_alert(1001.0), 60.0)  # firing already
            resolved = await asyncio.gather(*(s.resolve_alert("auth_failures", "key:abc",
                                                              1100.0) for s in everyone))
            assert sum(resolved) == 1
            # within the cool-down: no one fires it again; after it: exactly one
            assert not await store.fire_alert(_alert(1150.0), 60.0)
            again = await asyncio.gather(*(s.fire_alert(_alert(1200.0), 60.0)
                                           for s in everyone))
            assert sum(again) == 1
            [record] = await store.list_alerts()
            assert record.state == "firing" and record.fired_at == 1200.0
            assert record.resolved_at is None and record.detail["where"] == {"key_id": "abc"}
            await store.record_alert_delivery("auth_failures", "key:abc", 1201.0,
                                              {"slack": "sent"})
            [record] = await store.list_alerts(since=0)
            assert record.sent_at == 1201.0 and record.delivery == {"slack": "sent"}
        finally:
            for other in others:
                await other.close()
            await store.close()

    asyncio.run(main())


def test_list_since_and_prune(store: SQLStore) -> None:
    async def main() -> None:
        await store.open()
        try:
            for i, subject in enumerate(("a", "b", "c")):
                assert await store.fire_alert(_alert(100.0 + i, subject), 0)
            await store.resolve_alert("auth_failures", "a", 110.0)
            await store.resolve_alert("auth_failures", "b", 500.0)
            assert {a.subject for a in await store.list_alerts(since=400.0)} == {"b", "c"}
            assert await store.prune_alerts(resolved_before=400.0) == 1
            assert {a.subject for a in await store.list_alerts()} == {"b", "c"}
        finally:
            await store.close()

    asyncio.run(main())


def test_silences(store: SQLStore) -> None:
    async def main() -> None:
        await store.open()
        try:
            await store.put_silence(SilenceRecord("budget", until=200.0, reason="known",
                                                  created_at=100.0, actor="cli"))
            await store.put_silence(SilenceRecord("budget", until=300.0, created_at=150.0))
            await store.put_silence(SilenceRecord("rotation:key:x:due", until=120.0))
            assert [s.target for s in await store.list_silences(110.0)] == [
                "budget", "rotation:key:x:due"]
            [only] = await store.list_silences(250.0)
            assert only.until == 300.0 and only.reason is None
            assert await store.delete_silence("budget")
            assert not await store.delete_silence("budget")
        finally:
            await store.close()

    asyncio.run(main())


def test_key_sightings_keep_the_first_and_count_per_key(store: SQLStore) -> None:
    async def main() -> None:
        await store.open()
        try:
            await store.add_key_sightings([KeySighting("k1", "net", "10.0.0.0/24", 100.0),
                                           KeySighting("k1", "ua", "curl", 100.0)])
            await store.add_key_sightings([KeySighting("k1", "net", "10.0.0.0/24", 900.0),
                                           KeySighting("k1", "net", "10.9.9.0/24", 800.0),
                                           KeySighting("k1", "net", "10.9.9.0/24", 700.0)])
            found = await store.new_key_sightings(since=500.0)
            assert found == [(KeySighting("k1", "net", "10.9.9.0/24", 700.0), 100.0, 2)]
        finally:
            await store.close()

    asyncio.run(main())


def test_window_queries_of_the_ledger(store: SQLStore) -> None:
    def row(i: int, ts: float, status: int, **fields: object) -> UsageRecord:
        return UsageRecord(request_id=f"r{i}", ts=ts, endpoint="chat.completions",
                           status=status, cost_usd=Decimal(0), **fields)  # type: ignore[arg-type]

    async def main() -> None:
        await store.open()
        try:
            await store.insert_usage([
                row(1, 1000.0, 200, provider="openai", route="chat", key_id="k1"),
                row(2, 1001.0, 502, provider="openai", route="chat", key_id="k1"),
                row(3, 1002.0, 502, provider="openai", route="chat", key_id="k1"),
                row(4, 1003.0, 401, key_id="k2"),  # the gateway refused k2's text
                row(5, 1004.0, 401, key_id="k2"),
                row(6, 1005.0, 401, provider="openai", key_id="k1"),  # the provider's 401
                row(7, 10.0, 401, key_id="k2"),  # outside the window
            ])
            outcomes = {(o.provider, o.route, o.status): o.count
                        for o in await store.request_outcomes(since=900.0)}
            assert outcomes[("openai", "chat", 502)] == 2
            assert outcomes[("openai", "chat", 200)] == 1
            assert await store.auth_failures(since=900.0) == {"k2": 2}
        finally:
            await store.close()

    asyncio.run(main())


def test_a_stale_resolve_does_not_end_a_later_firing(store: SQLStore) -> None:
    """Replica B saw the firing of 1000 and resolves it late, after A resolved it and it fired
    again at 1200 (cool-down 0): the firing of 1200 stays firing."""
    async def main() -> None:
        await store.open()
        try:
            assert await store.fire_alert(_alert(1000.0), 0.0)
            assert await store.resolve_alert("auth_failures", "key:abc", 1100.0, fired_at=1000.0)
            assert await store.fire_alert(_alert(1200.0), 0.0)
            assert not await store.resolve_alert("auth_failures", "key:abc", 1250.0,
                                                 fired_at=1000.0)
            [record] = await store.list_alerts()
            assert record.state == "firing" and record.fired_at == 1200.0
            # nor does the late delivery record of the first firing land on the second
            await store.record_alert_delivery("auth_failures", "key:abc", 1260.0,
                                              {"slack": "sent"}, fired_at=1000.0)
            [record] = await store.list_alerts()
            assert record.sent_at is None
        finally:
            await store.close()

    asyncio.run(main())


def test_an_unsent_firing_is_claimed_once(store: SQLStore) -> None:
    async def main() -> None:
        await store.open()
        others = [SQLStore(store.url) for _ in range(2)]
        for other in others:
            await other.open()
        try:
            assert await store.fire_alert(_alert(1000.0), 0.0)
            claims = await asyncio.gather(*(s.claim_unsent_alert(
                "auth_failures", "key:abc", 1000.0, 2000.0) for s in (store, *others)))
            assert sum(claims) == 1
            [record] = await store.list_alerts()
            assert record.sent_at == 2000.0
            assert not await store.claim_unsent_alert("auth_failures", "key:abc", 999.0, 2001.0)
        finally:
            for other in others:
                await other.close()
            await store.close()

    asyncio.run(main())


def test_the_alert_reads_use_their_time_index_on_sqlite(tmp_path: Any,
                                                       migrated_sqlite: Any) -> None:
    """Every evaluation runs these: they must read the window (ix_usage_ts, the sightings'
    first_seen) and not walk the whole ledger or the whole sightings table."""
    import shutil
    import sqlite3

    from sqlalchemy import event

    async def main(path: str) -> list[str]:
        store = SQLStore(f"sqlite:///{path}")
        await store.open()
        seen: list[str] = []

        def keep(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            seen.append(statement)

        event.listen(store.engine.sync_engine, "before_cursor_execute", keep)
        try:
            await store.auth_failures(1000.0)
            await store.request_outcomes(1000.0)
            await store.new_key_sightings(1000.0)
        finally:
            await store.close()
        return seen

    path = tmp_path / "plan.db"
    shutil.copyfile(migrated_sqlite, path)
    statements = asyncio.run(main(str(path)))
    db = sqlite3.connect(path)
    try:
        for statement in statements:
            plan = " | ".join(row[3] for row in db.execute(
                "EXPLAIN QUERY PLAN " + statement, [1000.0] * statement.count("?")))
            # (SCAN of the small materialised history is fine; of a table, not)
            assert "SCAN usage" not in plan and "SCAN key_sightings" not in plan, plan
    finally:
        db.close()
