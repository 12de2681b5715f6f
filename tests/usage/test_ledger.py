"""LedgerWriter with a real SQLStore (SQLite in tmp_path): batching, draining, retries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest

from keystead.state.records import KeyRecord, UsageRecord
from keystead.state.sql_store import SQLStore
from keystead.usage.ledger import LedgerWriter
from support import with_open_store

T = TypeVar("T")


class RecordingStore:
    """Wraps the real store: counts insert calls, can be slow, can fail the next N writes."""

    def __init__(self, inner: SQLStore, *, delay: float = 0.0, failures: int = 0):
        self.inner = inner
        self.delay = delay
        self.failures = failures
        self.batches: list[list[str]] = []
        self.attempts = 0
        self.touched: list[dict[str, float]] = []

    async def insert_usage(self, records: Sequence[UsageRecord]) -> None:
        self.attempts += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database is restarting")
        await self.inner.insert_usage(records)
        self.batches.append([r.request_id for r in records])

    async def touch_keys(self, last_used: dict[str, float]) -> None:
        self.touched.append(dict(last_used))
        await self.inner.touch_keys(last_used)


def with_store(tmp_path, body: Callable[[SQLStore], Awaitable[T]]) -> T:
    return with_open_store(SQLStore(f"sqlite:///{tmp_path / 'ledger.db'}"), body)


def record(i: int, key_id: str | None = None, ts: float | None = None) -> UsageRecord:
    return UsageRecord(request_id=f"req-{i:05d}", ts=ts if ts is not None else 1_700_000_000 + i,
                       endpoint="chat.completions", status=200, key_id=key_id)


async def stored_ids(store: SQLStore) -> list[str]:
    return sorted(r.request_id for r in await store.recent_usage(100_000))


async def wait_until(predicate: Callable[[], bool], limit_s: float = 2.0) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > limit_s:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def test_records_are_written_after_the_flush_interval(tmp_path):
    async def body(store: SQLStore) -> None:
        writer = LedgerWriter(store, batch_size=500, flush_interval_s=0.05)
        writer.start()
        for i in range(3):
            writer.record(record(i))
        assert (writer.queued, writer.written) == (3, 0)  # nothing written on the request path
        await wait_until(lambda: writer.written == 3)  # no flush, no close: the interval did it
        assert writer.queued == 0
        assert await stored_ids(store) == ["req-00000", "req-00001", "req-00002"]
        await writer.close()

    with_store(tmp_path, body)


def test_a_full_batch_is_written_without_waiting_for_the_interval(tmp_path):
    async def body(store: SQLStore) -> None:
        recording = RecordingStore(store)
        writer = LedgerWriter(recording, batch_size=5, flush_interval_s=30.0)
        writer.start()
        await asyncio.sleep(0)  # the writer is waiting on its (long) interval
        for i in range(12):
            writer.record(record(i))
        await wait_until(lambda: writer.written >= 10)
        assert [len(batch) for batch in recording.batches] == [5, 5]
        assert writer.queued == 2  # a partial batch waits for the interval
        await writer.close()
        assert [len(batch) for batch in recording.batches] == [5, 5, 2]

    with_store(tmp_path, body)


def test_close_drains_everything(tmp_path):
    async def body(store: SQLStore) -> None:
        writer = LedgerWriter(store, batch_size=7, flush_interval_s=30.0)
        writer.start()
        for i in range(50):
            writer.record(record(i))
        await writer.close()
        assert writer.queued == 0
        assert writer.written == 50
        assert await stored_ids(store) == [f"req-{i:05d}" for i in range(50)]

    with_store(tmp_path, body)


def test_close_without_start_still_writes(tmp_path):
    async def body(store: SQLStore) -> None:
        writer = LedgerWriter(store, batch_size=4)
        for i in range(10):
            writer.record(record(i))
        await writer.close()
        assert len(await stored_ids(store)) == 10

    with_store(tmp_path, body)


def test_flush_writes_everything_queued_now(tmp_path):
    async def body(store: SQLStore) -> None:
        recording = RecordingStore(store)
        writer = LedgerWriter(recording, batch_size=4, flush_interval_s=30.0)
        for i in range(10):
            writer.record(record(i))
        await writer.flush()
        assert [len(b) for b in recording.batches] == [4, 4, 2]
        assert len(await stored_ids(store)) == 10
        await writer.flush()  # nothing left: no empty insert
        assert recording.attempts == 3

    with_store(tmp_path, body)


def test_flush_racing_the_background_writer_never_writes_a_record_twice(tmp_path):
    # Regression: flush() and the background task could both take the same batch.
    async def body(store: SQLStore) -> None:
        recording = RecordingStore(store, delay=0.01)  # slow writes widen the race
        writer = LedgerWriter(recording, batch_size=10, flush_interval_s=0.005)
        writer.start()
        for round_ in range(4):
            for i in range(35):
                writer.record(record(round_ * 100 + i))
            await asyncio.sleep(0.007)  # the background writer is mid-batch
            await asyncio.gather(writer.flush(), writer.flush())
        await writer.close()
        ids = await stored_ids(store)
        written = [rid for batch in recording.batches for rid in batch]
        assert len(written) == len(set(written)) == 140
        assert ids == sorted(written)
        assert writer.written == 140

    with_store(tmp_path, body)


def test_failed_write_is_retried_and_nothing_is_lost(tmp_path, caplog):
    async def body(store: SQLStore) -> None:
        recording = RecordingStore(store, failures=3)
        writer = LedgerWriter(recording, batch_size=5, flush_interval_s=0.01)
        writer.start()
        for i in range(12):
            writer.record(record(i))
        await wait_until(lambda: writer.written == 12)
        await writer.close()
        assert recording.attempts >= 3 + 3  # three failures, then at least three batches
        assert await stored_ids(store) == [f"req-{i:05d}" for i in range(12)]
        # Retried records kept their order: the failed batch went back to the front.
        assert recording.batches[0] == [f"req-{i:05d}" for i in range(5)]

    with caplog.at_level(logging.ERROR, logger="keystead.ledger"):
        with_store(tmp_path, body)
    assert "writing the usage ledger failed; retrying" in caplog.text


def test_a_database_outage_is_logged_once_then_briefly_and_when_it_is_over(tmp_path, caplog):
    """Regression (issue 13): a PostgreSQL outage logged a traceback every second."""

    async def body(store: SQLStore) -> None:
        recording = RecordingStore(store, failures=40)
        writer = LedgerWriter(recording, batch_size=5, flush_interval_s=0.005)
        writer.start()
        writer.record(record(1))
        await wait_until(lambda: writer.written == 1, limit_s=5)
        await writer.close()
        assert recording.attempts == 41

    with caplog.at_level(logging.INFO, logger="keystead.ledger"):
        with_store(tmp_path, body)
    lines = [r for r in caplog.records if r.name == "keystead.ledger"]
    assert [(r.levelname, r.exc_info is not None) for r in lines] == [
        ("ERROR", True), ("WARNING", False)]
    assert "database is restarting" in caplog.text  # the first one, with its traceback
    assert "writing the usage ledger works again after" in lines[1].getMessage()
    assert "(40 failed attempts)" in lines[1].getMessage()


def test_sync_writes_what_was_queued_before_it_not_what_comes_after(tmp_path):
    async def body(store: SQLStore) -> None:
        recording = RecordingStore(store, delay=0.02)
        writer = LedgerWriter(recording, batch_size=4, flush_interval_s=0.001)
        writer.start()
        for i in range(10):
            writer.record(record(i))
        await asyncio.sleep(0.005)  # the background writer holds a batch: not in the queue
        syncing = asyncio.create_task(writer.sync())
        await asyncio.sleep(0)
        for i in range(10, 200):  # a steady stream while it syncs: never waited for
            writer.record(record(i))
        await syncing
        assert {f"req-{i:05d}" for i in range(10)} <= set(await stored_ids(store))
        assert writer.written < 200
        await writer.close()

    with_store(tmp_path, body)


def test_flush_while_the_store_is_down_raises_and_keeps_the_records(tmp_path):
    async def body(store: SQLStore) -> None:
        recording = RecordingStore(store, failures=1)
        writer = LedgerWriter(recording, batch_size=3)
        for i in range(5):
            writer.record(record(i))
        with pytest.raises(ConnectionError):
            await writer.flush()
        assert writer.queued == 5
        assert writer.written == 0
        await writer.flush()
        assert await stored_ids(store) == [f"req-{i:05d}" for i in range(5)]

    with_store(tmp_path, body)


def test_close_drains_what_a_failing_store_held_back(tmp_path):
    async def body(store: SQLStore) -> None:
        recording = RecordingStore(store, failures=2)
        writer = LedgerWriter(recording, batch_size=100, flush_interval_s=0.01)
        writer.start()
        for i in range(20):
            writer.record(record(i))
        await wait_until(lambda: recording.attempts >= 1)
        await writer.close()
        assert await stored_ids(store) == [f"req-{i:05d}" for i in range(20)]

    with_store(tmp_path, body)


def test_queue_overflow_drops_and_counts(tmp_path, caplog):
    async def body(store: SQLStore) -> None:
        writer = LedgerWriter(store, batch_size=100, queue_max=5)
        for i in range(8):
            writer.record(record(i))
        assert writer.queued == 5
        assert writer.dropped == 3
        await writer.close()
        # The oldest records are kept; the overflow is what is dropped.
        assert await stored_ids(store) == [f"req-{i:05d}" for i in range(5)]
        writer.record(record(99))  # room again once drained
        assert writer.dropped == 3

    with caplog.at_level(logging.ERROR, logger="keystead.ledger"):
        with_store(tmp_path, body)
    assert caplog.text.count("usage queue full") == 1  # logged once, not per record


def test_last_used_at_is_updated_on_keys(tmp_path):
    def key(key_id: str, name: str) -> KeyRecord:
        return KeyRecord(id=key_id, name=name, key_hash="h" * 64, env="prod", created_at=1.0)

    async def body(store: SQLStore) -> dict[str, Any]:
        await store.insert_key(key("aaaaaaaa", "prod-a-b"))
        await store.insert_key(key("bbbbbbbb", "prod-c-d"))
        await store.insert_key(key("cccccccc", "prod-e-f"))
        writer = LedgerWriter(store, batch_size=100)
        writer.record(record(1, "aaaaaaaa", ts=1_700_000_300.0))
        writer.record(record(2, "aaaaaaaa", ts=1_700_000_100.0))  # older, arrives later
        writer.record(record(3, "bbbbbbbb", ts=1_700_000_200.0))
        writer.record(record(4, None, ts=1_700_000_400.0))  # unauthenticated request
        await writer.close()
        return {k.id: k.last_used_at for k in await store.list_keys()}

    assert with_store(tmp_path, body) == {"aaaaaaaa": 1_700_000_300.0,
                                          "bbbbbbbb": 1_700_000_200.0, "cccccccc": None}


def test_close_gives_up_on_a_store_that_stays_down(tmp_path, caplog):
    async def body(store: SQLStore) -> None:
        recording = RecordingStore(store, failures=1_000)
        writer = LedgerWriter(recording, batch_size=10, flush_interval_s=0.01)
        for i in range(4):
            writer.record(record(i))
        with pytest.raises(ConnectionError):
            await writer.close()
        assert recording.attempts == 3  # bounded: shutdown does not hang on a dead database
        assert writer.queued == 4
        assert await stored_ids(store) == []

    with caplog.at_level(logging.ERROR, logger="keystead.ledger"):
        with_store(tmp_path, body)
    assert "closed with 4 records unwritten" in caplog.text


def test_a_record_postgresql_refuses_is_set_aside_and_the_rest_written():
    """PostgreSQL enforces column sizes (SQLite does not): one bad record must not block the
    ledger behind it, forever, as a retried batch would."""
    import dataclasses

    import pg

    pg.require_pg()
    with pg.fresh_database("keystead_l") as url:
        async def body(store: SQLStore) -> tuple[list[str], int, int]:
            writer = LedgerWriter(store, batch_size=100, flush_interval_s=0.01)
            bad = dataclasses.replace(record(2), key_name="k" * 500)
            for item in (record(1), bad, record(3)):
                writer.record(item)
            await writer.close()
            return await stored_ids(store), writer.written, writer.rejected

        ids, written, rejected = with_open_store(SQLStore(url), body)
    assert ids == ["req-00001", "req-00003"]
    assert (written, rejected) == (2, 1)
