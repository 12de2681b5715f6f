"""The engine on a real store: de-duplication, the resolved message, the cool-down, silences,
one message across several gateways, and a channel that hangs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from alert_support import Recorder, Source, alerts_config

from keystead.alerts.engine import AlertEngine
from keystead.state.records import EventRecord, SilenceRecord
from keystead.state.sql_store import SQLStore

NOW = 1_796_000_000.0
TARGET = "provider:openai#1"


async def check(store: SQLStore, kind: str, ts: float) -> None:
    await store.insert_event(EventRecord(kind, ts, actor="gateway",
                                         detail={"target": TARGET, "status": 503,
                                                 "error": "upstream down"}))


def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'keystead.db'}"


def on_store(tmp_path: Path, test: Callable[[SQLStore], Awaitable[None]]) -> None:
    """`test(store)` on a fresh SQLite store in tmp_path, closed afterwards."""
    async def main() -> None:
        store = SQLStore(url(tmp_path))
        await store.open()
        try:
            await test(store)
        finally:
            await store.close()

    asyncio.run(main())


def engine(source: Source, channel: Recorder, **options: Any) -> AlertEngine:
    return AlertEngine(source, channels=lambda _config: [channel], backoff_s=0.01, **options)


def test_fires_once_resolves_once_and_cools_down(tmp_path: Path) -> None:
    async def test(store: SQLStore) -> None:
        channel = Recorder()
        alerts = engine(Source(alerts_config(cooldown="10m"), store), channel)
        await check(store, "check.failed", NOW - 5)
        [fired] = await alerts.evaluate(NOW)
        assert fired.kind == "firing" and fired.alert.subject == TARGET
        assert await alerts.evaluate(NOW + 60) == []  # still firing: no second message
        await check(store, "check.recovered", NOW + 100)
        [resolved] = await alerts.evaluate(NOW + 120)
        assert resolved.kind == "resolved"
        await check(store, "check.failed", NOW + 200)
        assert await alerts.evaluate(NOW + 240) == []  # within the cool-down
        [again] = await alerts.evaluate(NOW + 120 + 601)
        assert again.kind == "firing"
        await alerts.drain()
        assert [m.kind for m in channel.sent] == ["firing", "resolved", "firing"]
        text = channel.sent[0].text()
        assert "provider:openai#1" in text and "keystead check --provider openai" in text
        assert "runbook.md#alert-check-failing" in text
        kinds = sorted(e.kind for e in await store.list_events(10)
                       if e.kind.startswith("alert."))
        assert kinds == ["alert.firing", "alert.firing", "alert.resolved"]
        [event] = await store.list_events(1, kind="alert.firing")
        assert event.detail["delivery"] == {"rec": "sent"}
        [state] = await store.list_alerts()
        assert state.state == "firing" and state.delivery == {"rec": "sent"}

    on_store(tmp_path, test)


def test_a_silence_keeps_the_state_but_sends_nothing(tmp_path: Path) -> None:
    async def test(store: SQLStore) -> None:
        channel = Recorder()
        alerts = engine(Source(alerts_config(), store), channel)
        await store.put_silence(SilenceRecord(f"check_failing:{TARGET}", until=NOW + 3600))
        await check(store, "check.failed", NOW)
        [fired] = await alerts.evaluate(NOW)
        assert fired.silenced
        await alerts.drain()
        assert channel.sent == []
        [event] = await store.list_events(1, kind="alert.firing")
        assert event.detail["silenced"] and event.detail["delivery"] == {"*": "silenced"}

    on_store(tmp_path, test)


def test_resolved_messages_can_be_turned_off_per_rule(tmp_path: Path) -> None:
    async def test(store: SQLStore) -> None:
        channel = Recorder()
        config = alerts_config(rules={"check_failing": {"send_resolved": False}})
        alerts = engine(Source(config, store), channel)
        await check(store, "check.failed", NOW)
        await alerts.evaluate(NOW)
        await check(store, "check.recovered", NOW + 1)
        [resolved] = await alerts.evaluate(NOW + 2)
        assert not resolved.notify
        await alerts.drain()
        assert [m.kind for m in channel.sent] == ["firing"]

    on_store(tmp_path, test)


def test_three_gateways_send_one_message(tmp_path: Path) -> None:
    async def main() -> None:
        stores = [SQLStore(url(tmp_path)) for _ in range(3)]
        for store in stores:
            await store.open()
        try:
            channel = Recorder()
            engines = [engine(Source(alerts_config(), s), channel) for s in stores]
            await check(stores[0], "check.failed", NOW)
            for _ in range(3):
                await asyncio.gather(*(e.evaluate(NOW + 1) for e in engines))
            await check(stores[0], "check.recovered", NOW + 2)
            for _ in range(3):
                await asyncio.gather(*(e.evaluate(NOW + 3) for e in engines))
            for each in engines:
                await each.drain()
            assert [m.kind for m in channel.sent] == ["firing", "resolved"]
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_a_hanging_channel_does_not_stall_the_evaluation(tmp_path: Path) -> None:
    async def test(store: SQLStore) -> None:
        hanging = Recorder(name="hangs", hang=True)
        config = alerts_config(send_timeout_s=0.2, retries=1)
        alerts = engine(Source(config, store), hanging)
        await check(store, "check.failed", NOW)
        started = time.monotonic()
        [_fired] = await alerts.evaluate(NOW)
        assert time.monotonic() - started < 1.0  # sending happens beside it
        await alerts.drain(timeout_s=10)
        [event] = await store.list_events(1, kind="alert.firing")
        assert event.detail["delivery"]["hangs"].startswith("failed: no answer within")

    on_store(tmp_path, test)


def test_a_failing_channel_is_retried_then_recorded(tmp_path: Path, caplog: Any) -> None:
    async def test(store: SQLStore) -> None:
        failing = Recorder(name="down", fail=True)
        alerts = engine(Source(alerts_config(retries=2), store), failing)
        await check(store, "check.failed", NOW)
        await alerts.evaluate(NOW)
        await alerts.drain()
        [state] = await store.list_alerts()
        assert state.delivery == {"down": "failed: HTTP 503"}

    on_store(tmp_path, test)
    errors = [r for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(errors) == 1 and "after 3 attempts" in errors[0].getMessage()


def test_a_rule_turned_off_resolves_its_alerts_without_a_message(tmp_path: Path) -> None:
    async def test(store: SQLStore) -> None:
        channel = Recorder()
        source = Source(alerts_config(), store)
        alerts = engine(source, channel)
        await check(store, "check.failed", NOW)
        await alerts.evaluate(NOW)
        source.config = alerts_config(rules={"check_failing": {"enabled": False}})
        [resolved] = await alerts.evaluate(NOW + 1)
        assert resolved.kind == "resolved" and not resolved.notify
        await alerts.drain()
        assert [m.kind for m in channel.sent] == ["firing"]

    on_store(tmp_path, test)


def test_a_firing_whose_sender_died_is_sent_once_by_another_gateway(tmp_path: Path) -> None:
    """Gateway A wins the firing and stops (or is killed) before its message got out: after the
    longest a delivery can take, exactly one of the others sends it."""
    async def main() -> None:
        stores = [SQLStore(url(tmp_path)) for _ in range(3)]
        for store in stores:
            await store.open()
        try:
            config = alerts_config(send_timeout_s=0.2, retries=1)
            dead = engine(Source(config, stores[0]), Recorder(name="rec", hang=True))
            channel = Recorder()
            others = [engine(Source(config, s), channel) for s in stores[1:]]
            await check(stores[0], "check.failed", NOW)
            [_won] = await dead.evaluate(NOW)
            await dead.stop(grace_s=0.05)  # its send is cancelled: nothing recorded
            for each in others:  # not yet: the sender may still be retrying
                assert await each.evaluate(NOW + 10) == []
            later = NOW + dead.delivery_bound(config.alerts) + 1
            won = await asyncio.gather(*(e.evaluate(later) for e in others))
            assert sorted(len(w) for w in won) == [0, 1]
            for each in others:
                assert await each.evaluate(later + 60) == []
                await each.drain()
            assert [(m.kind, m.at) for m in channel.sent] == [("firing", NOW)]
            [record] = await stores[1].list_alerts()
            assert record.sent_at is not None and record.delivery == {"rec": "sent"}
        finally:
            for store in stores:
                await store.close()

    asyncio.run(main())


def test_a_resolved_message_goes_out_before_the_next_firing(tmp_path: Path) -> None:
    """A flapping alert with no cool-down: its "resolved" is slow to deliver (the receiver
    retries); the next "firing" waits for it instead of overtaking it."""
    sent: list[str] = []

    class Slow(Recorder):
        async def send(self, message: Any, timeout_s: float) -> None:
            if message.kind == "resolved":
                await asyncio.sleep(0.3)
            sent.append(message.kind)

    async def test(store: SQLStore) -> None:
        alerts = engine(Source(alerts_config(cooldown="0s"), store), Slow())
        await check(store, "check.failed", NOW)
        assert [t.kind for t in await alerts.evaluate(NOW)] == ["firing"]
        await alerts.drain()
        await check(store, "check.recovered", NOW + 1)
        assert [t.kind for t in await alerts.evaluate(NOW + 2)] == ["resolved"]
        await check(store, "check.failed", NOW + 3)
        assert [t.kind for t in await alerts.evaluate(NOW + 4)] == ["firing"]
        await alerts.drain()
        assert sent == ["firing", "resolved", "firing"]

    on_store(tmp_path, test)


def test_an_alert_that_fired_silenced_resolves_silenced(tmp_path: Path) -> None:
    async def test(store: SQLStore) -> None:
        channel = Recorder()
        alerts = engine(Source(alerts_config(), store), channel)
        await store.put_silence(SilenceRecord(f"check_failing:{TARGET}", until=NOW + 60))
        await check(store, "check.failed", NOW)
        await alerts.evaluate(NOW)
        await alerts.drain()
        await check(store, "check.recovered", NOW + 120)
        [resolved] = await alerts.evaluate(NOW + 130)  # after the silence ended
        assert resolved.silenced  # nobody was told it fired: nobody is told it ended
        await alerts.drain()
        assert channel.sent == []

    on_store(tmp_path, test)


async def _fail_targets(store: SQLStore, count: int, kind: str, ts: float) -> None:
    for n in range(count):
        await store.insert_event(EventRecord(kind, ts, actor="gateway", detail={
            "target": f"route:r{n:02d}", "status": 503, "error": "upstream down"}))


def test_a_crowd_of_one_rule_goes_out_as_one_digest(tmp_path: Path) -> None:
    from keystead.alerts.engine import DIGEST_OVER

    async def test(store: SQLStore) -> None:
        channel, other = Recorder(), Recorder(name="other")
        alerts = AlertEngine(Source(alerts_config(), store),
                             channels=lambda _config: [channel, other], backoff_s=0.01)
        crowd = DIGEST_OVER + 20
        await _fail_targets(store, crowd, "check.failed", NOW)
        assert len(await alerts.evaluate(NOW)) == crowd
        await alerts.drain()
        [digest] = channel.sent  # one message per channel, not 25
        assert len(other.sent) == 1
        assert digest.kind == "firing" and digest.alert.numbers["alerts"] == str(crowd)
        assert "route:r00" in digest.alert.title and "and 5 more" in digest.alert.title
        events = await store.list_events(100, kind="alert.firing")
        assert len(events) == crowd  # each alert keeps its own record
        assert all(e.detail["delivery"] == {"rec": "sent", "other": "sent"} for e in events)
        states = [r for r in await store.list_alerts(since=0) if r.state == "firing"]
        assert len(states) == crowd and all(r.sent_at is not None for r in states)

        await _fail_targets(store, crowd, "check.recovered", NOW + 10)
        assert len(await alerts.evaluate(NOW + 20)) == crowd
        await alerts.drain()
        assert [m.kind for m in channel.sent] == ["firing", "resolved"]
        assert "ended" in channel.sent[1].alert.title

        # at the threshold: each alert its own message
        few = Recorder()
        alerts = AlertEngine(Source(alerts_config(cooldown="0s"), store),
                             channels=lambda _config: [few], backoff_s=0.01)
        await _fail_targets(store, DIGEST_OVER, "check.failed", NOW + 30)
        assert len(await alerts.evaluate(NOW + 40)) == DIGEST_OVER
        await alerts.drain()
        assert len(few.sent) == DIGEST_OVER

    on_store(tmp_path, test)


def test_alerts_turned_off_resolve_what_fires_without_a_message(tmp_path: Path) -> None:
    async def test(store: SQLStore) -> None:
        channel = Recorder()
        source = Source(alerts_config(), store)
        alerts = engine(source, channel)
        await check(store, "check.failed", NOW)
        await alerts.evaluate(NOW)
        source.config = alerts_config(enabled=False)  # a reload turned them off
        [resolved] = await alerts.evaluate(NOW + 1)
        assert resolved.kind == "resolved" and not resolved.notify
        assert [r.state for r in await store.list_alerts()] == ["resolved"]
        await alerts.drain()
        assert [m.kind for m in channel.sent] == ["firing"]

    on_store(tmp_path, test)
