"""`Metrics`: what the runtime holds for Prometheus, on or off.

On (`metrics.enabled`, the default): the request counters (recorder.py), the scrape-time
gauges (state.py), and whatever other parts add with `add_collector`. Off: `NoMetrics`, the
same interface doing nothing, and prometheus-client is never imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from keystead.metrics.multiproc import MULTIPROC_ENV

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from keystead.pipeline.context import RequestContext
    from keystead.runtime import Runtime
    from keystead.state.records import UsageRecord

__all__ = ["Metrics", "NoMetrics", "open_metrics"]

log = logging.getLogger("keystead.metrics")

# A scrape-time family source: called at each scrape, yields prometheus-client Metric families
# (GaugeMetricFamily, CounterMetricFamily, ...). It must be quick and must not block.
CollectFn = Callable[[], "Iterable[Metric]"]


class NoMetrics:
    """Metrics are off: every call is free."""

    enabled = False

    def started(self) -> None:
        return None

    def observe(self, record: UsageRecord, ctx: RequestContext) -> None:
        return None

    def add_collector(self, collect: CollectFn) -> None:
        return None

    def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _Added:
    """A callable as a prometheus-client collector (`add_collector`): called on the event loop
    before the scrape is rendered (in a thread), so it may read the runtime's state freely."""

    def __init__(self, collect: CollectFn):
        self._collect = collect
        self._families: list[Metric] = []

    def prepare(self) -> None:
        try:
            self._families = list(self._collect())
        except Exception:  # one broken source must not take the whole scrape down
            log.exception("a metrics collector failed; its families are left out")
            self._families = []

    def collect(self) -> Iterable[Metric]:
        return self._families


class Metrics:
    enabled = True

    def __init__(self, runtime: Runtime):
        from prometheus_client import CollectorRegistry

        from keystead.metrics.families import RequestFamilies
        from keystead.metrics.recorder import Recorder
        from keystead.metrics.state import ScrapeState

        config = runtime.config.metrics
        self._rt = runtime
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # What a scrape renders. In multiprocess mode the request families are read from every
        # worker's files instead (MultiProcessCollector), so they are registered nowhere.
        self.registry = CollectorRegistry()
        self.families = RequestFamilies(None if self.multiprocess else self.registry)
        if self.multiprocess:
            from prometheus_client.multiprocess import MultiProcessCollector

            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        self.recorder = Recorder(self.families, config.max_label_values, lambda: runtime.live)
        self.state = ScrapeState(runtime, config.max_label_values)
        self.registry.register(self.state)
        # The request path calls these two directly (no extra call layer).
        self.started = self.recorder.started
        self.observe = self.recorder.observe
        self._publisher: asyncio.Task[None] | None = None
        self._added: list[_Added] = []

    def add_collector(self, collect: CollectFn) -> None:
        """Add scrape-time families: `collect()` is called at each scrape of /metrics (by the
        worker that answers it) and yields prometheus-client Metric families whose names start
        with `keystead_`. It must be quick: read what is in memory, never wait on I/O."""
        added = _Added(collect)
        self._added.append(added)
        self.registry.register(added)

    def publish(self) -> None:
        """What this process counted since the last time, and its own gauges (requests in
        flight, the ledger writer), into prometheus-client."""
        self.recorder.flush()
        self.families.in_flight.set(self.recorder.in_flight)
        ledger = self._rt.ledger
        self.families.ledger_queue.set(ledger.queued)
        self.families.ledger_dropped.set(ledger.dropped)

    async def render(self) -> bytes:
        """The text exposition of a scrape (the shared state read first, time-bounded)."""
        from prometheus_client import generate_latest

        self.publish()
        await self.state.refresh()
        for added in self._added:
            added.prepare()
        # Formatting costs ~15 us per sample (47 ms for 3,000): in a thread, so the event loop
        # keeps serving requests meanwhile. prometheus-client's metrics are thread-safe, and
        # every family of ours was built above, on the loop.
        return await asyncio.to_thread(generate_latest, self.registry)

    def start(self) -> None:
        """With several workers, each publishes its own gauges every second: the scrape is
        answered by one of them, and must see the others'."""
        if self.multiprocess and self._publisher is None:
            self._publisher = asyncio.get_running_loop().create_task(self._publish_loop())

    async def _publish_loop(self, every_s: float = 1.0) -> None:
        while True:
            try:
                self.publish()
            except Exception:
                log.exception("publishing this worker's gauges failed")
            await asyncio.sleep(every_s)

    async def close(self) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None
            self.publish()  # the last requests of a worker that stops still count


def open_metrics(runtime: Runtime) -> Metrics | NoMetrics:
    if not runtime.config.metrics.enabled:
        return NoMetrics()
    return Metrics(runtime)


def exposition_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST

    return str(CONTENT_TYPE_LATEST)


