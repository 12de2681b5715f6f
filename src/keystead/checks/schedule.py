"""`checks.every`: the gateway runs the checks itself, once per period across all replicas.

Each replica wakes up every period and asks the counters for the period's lease: a GCRA rate
of one per period (`Rate("checks:lease", 1, period)`), the same call that admits requests. On
Redis the replicas share it, so the first to ask in a period runs the checks and the others
hear "no"; in process (one gateway) it is always granted. When the counters are out of reach
the replica runs the checks anyway: a check run twice costs a few tokens, a check not run
hides an outage. Without Redis, the workers of one `serve --workers N` share a lock file
instead (worker_lease.py), so one of them runs the period's checks. The period is read from
the config at every wake-up, so a reload can start, change or stop the checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from keystead.checks.run import CheckRunner
from keystead.checks.transitions import record_transitions
from keystead.checks.worker_lease import CHECKS_LOCK_ENV, WorkerLease
from keystead.state.counters import CountersUnavailable, Rate

if TYPE_CHECKING:
    from keystead.checks.result import CheckResult
    from keystead.runtime import Runtime

__all__ = ["LEASE", "CheckSchedule"]

log = logging.getLogger("keystead.checks")

LEASE = "checks:lease"
_IDLE_S = 5.0  # how often a gateway without `checks.every` looks whether a reload set it


class CheckSchedule:
    def __init__(self, runtime: Runtime, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.rt = runtime
        self._sleep = sleep
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._workers = WorkerLease(os.environ.get(CHECKS_LOCK_ENV))  # --workers, no Redis
        self.runs = 0  # periods this replica ran the checks in

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="keystead-checks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._workers.release()

    async def tick(self) -> list[CheckResult] | None:
        """One period: take the lease and run the checks; None when another replica has it."""
        every = self.rt.config.checks.every_s
        if every is None:
            return None
        if not await self._lease(every):
            # Another replica runs this period's checks: the results here are older than its.
            # Kept, a passing one would hide its failure from `max by (target)`.
            self.rt.checks.clear()
            return None
        self.runs += 1
        return await self.run_once()

    async def run_once(self) -> list[CheckResult]:
        results = await CheckRunner(self.rt).run()
        await record_transitions(self.rt.store, results)
        return results

    async def _lease(self, every_s: float) -> bool:
        # A little shorter than the period, so that the replica that holds it is not refused
        # by a timer that fires a hair early.
        window = max(1, int(every_s) - 1)
        if not self.rt.config.redis.url and not self._workers.held():
            return False  # another worker of this gateway runs them
        try:
            admission = await self.rt.counters.admit("", [Rate(LEASE, 1, window, 1)], (), 0.0)
        except CountersUnavailable:
            log.warning("checks: the counters are out of reach; running this period's checks "
                        "without the lease")
            return True
        return admission.allowed

    async def _loop(self) -> None:
        due = self._clock()  # the first period starts now
        while True:
            every = self.rt.config.checks.every_s
            if every is None:
                due = self._clock()
                await self._sleep(_IDLE_S)
                continue
            wait = due - self._clock()
            if wait > 0:
                await self._sleep(min(wait, _IDLE_S))
                continue
            try:
                await self.tick()
            except Exception:
                log.exception("checks: the scheduled run failed; trying again next period")
            due = self._clock() + every
