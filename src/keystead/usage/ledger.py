"""The usage ledger writer: records leave the request path through a queue (P11, P21).

A background task takes records off the queue and writes them in batches: when the batch is full
or the flush interval has passed. `close()` drains everything still queued, so a SIGTERM that
reaches the lifespan shutdown loses no record. A failed write is retried; records are dropped only
when the queue overflows, and then a log line says how many. A database outage is logged once
with its traceback, then briefly at most every 30 s, then when writes work again.

Records leave the queue in the order they came (a failed batch goes back to the front), so
`sync()` can wait for exactly the records queued before it: the limiter's rejoin needs every
row settled before a loss of Redis's data in the ledger, not a queue that never empties.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from keystead.alerts.sources import SightingFilter
from keystead.state.outage import OutageLog
from keystead.state.records import UsageRecord
from keystead.state.store import InvalidRecord, Store

__all__ = ["LedgerWriter"]

log = logging.getLogger("keystead.ledger")

_CLOSE_ATTEMPTS = 3


class LedgerWriter:
    def __init__(self, store: Store, *, batch_size: int = 500, flush_interval_s: float = 1.0,
                 queue_max: int = 100_000):
        self._store = store
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._queue_max = queue_max
        self._pending: list[UsageRecord] = []
        self._wakeup = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.dropped = 0
        self.rejected = 0  # records the database refused (values out of range)
        self.written = 0
        self._queued_total = 0  # records ever queued; written + rejected catch up with it
        self._outage = OutageLog(log, "writing the usage ledger")
        self.sightings = SightingFilter()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="keystead-ledger")

    def record(self, record: UsageRecord) -> None:
        """Queue one record. Never blocks and never raises on the request path."""
        if len(self._pending) >= self._queue_max:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("usage queue full: %d records dropped so far", self.dropped)
            return
        self._pending.append(record)
        self._queued_total += 1
        if len(self._pending) >= self._batch_size:
            self._wakeup.set()

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Write everything queued now (tests, reports that must see the latest requests)."""
        while self._pending:
            await self._write_batch()

    async def sync(self) -> None:
        """Return once every record queued before this call is written (or set aside as
        refused); raises what the database raises. Records queued meanwhile may wait."""
        mark = self._queued_total  # (a batch being written is no longer in `_pending`)
        while self.written + self.rejected < mark:
            await self._write_batch()

    async def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        # The last chance to write what is queued: retry a passing hiccup before giving up.
        for attempt in range(1, _CLOSE_ATTEMPTS + 1):
            try:
                await self.flush()
                return
            except Exception:
                if attempt == _CLOSE_ATTEMPTS:
                    log.error("usage ledger closed with %d records unwritten", len(self._pending))
                    raise
                log.exception("usage batch write failed at shutdown; retrying")
                await asyncio.sleep(min(self._interval, 1.0))

    async def _write_one_by_one(self, batch: list[UsageRecord]) -> list[UsageRecord]:
        written: list[UsageRecord] = []
        for index, record in enumerate(batch):
            try:
                await self._store.insert_usage([record])
            except InvalidRecord as exc:
                self.rejected += 1
                log.error("usage record of request %s refused by the database, set aside: %s",
                          record.request_id, exc)
                continue
            except BaseException:
                self._pending[0:0] = batch[index:]  # a real outage: retry the rest later
                self.written += len(written)
                raise
            written.append(record)
        return written

    async def _run(self) -> None:
        while not self._closing:
            # A full batch already queued (a burst bigger than one batch) goes out at once.
            if len(self._pending) < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._interval)
            self._wakeup.clear()
            if self._pending:
                try:
                    await self._write_batch()
                except Exception as exc:  # the writer must outlive a database hiccup
                    self._outage.failed(exc)
                    await asyncio.sleep(min(self._interval, 1.0))
                else:
                    self._outage.ok()

    async def _write_batch(self) -> None:
        # One writer at a time: `flush()` and the background task must not write a batch twice.
        async with self._lock:
            batch = self._pending[: self._batch_size]
            if not batch:
                return
            del self._pending[: len(batch)]
            try:
                await self._store.insert_usage(batch)
            except InvalidRecord:
                # A record the database refuses would block every record behind it forever:
                # write the batch one by one and set aside only what is refused.
                batch = await self._write_one_by_one(batch)
            except BaseException:
                self._pending[0:0] = batch  # back to the front, for the retry
                raise
            self.written += len(batch)
            last_used: dict[str, float] = {}
            for record in batch:
                if record.key_id is None or (record.status == 401 and record.provider is None):
                    continue  # a refused text that named the key is not a use of it
                if record.ts > last_used.get(record.key_id, 0.0):
                    last_used[record.key_id] = record.ts
            await self._store.touch_keys(last_used)
            await self._record_sightings(batch)

    async def _record_sightings(self, batch: list[UsageRecord]) -> None:
        """The sources (network, user-agent family) this process had not seen for a key: for
        the new_source alert. Usually none; a failure is logged and retried with a later
        batch, never holding up the ledger."""
        fresh = self.sightings.new(batch)
        if not fresh:
            return
        try:
            await self._store.add_key_sightings(fresh)
        except Exception as exc:
            self.sightings.forget(fresh)
            log.warning("recording %d key sources failed (%s); retried later", len(fresh),
                        type(exc).__name__)
