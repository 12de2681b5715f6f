"""`checks.every`: check.failed / check.recovered once per change of state, the gateway's own
background run, and one run per period across three replicas sharing Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from keystead.checks.schedule import CheckSchedule
from keystead.checks.transitions import FAILED, RECOVERED
from keystead.checks.worker_lease import CHECKS_LOCK_ENV, workers_lock
from keystead.runtime import Runtime
from redis_support import REDIS_URL, delete_prefix, fresh_prefix, require_redis
from support import make_loaded, running_app

_FLAKY = {"providers": {"mock": {"type": "mock", "models": ["gpt-4o-mini"]}}}


def _break(runtime: Runtime, status: int | None) -> None:
    """Make the in-process mock answer `status` to everything (None: answer normally)."""
    app: Any = runtime.providers.providers["mock"].transport.app  # type: ignore[attr-defined]
    app.settings = dataclasses.replace(app.settings, failure_rate=1.0 if status else 0.0,
                                       failure_status=status or 500)


async def _events(runtime: Runtime) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for kind in (FAILED, RECOVERED):
        found += [(e.ts, e.id, kind, e.detail) for e in await runtime.store.list_events(
            100, kind=kind)]
    return [(kind, detail) for _, _, kind, detail in sorted(found, key=lambda e: (e[0], e[1]))]


def test_events_are_written_once_per_change_of_state(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_app(make_loaded(tmp_path, _FLAKY)) as client:
            runtime = client.runtime
            schedule = CheckSchedule(runtime)
            await schedule.run_once()  # healthy from the start: nothing to say
            assert await _events(runtime) == []
            _break(runtime, 503)
            for _ in range(3):
                (result,) = await schedule.run_once()
                assert (result.ok, result.status) == (False, 503)
            assert runtime.checks["provider:mock"].status == 503
            _break(runtime, None)
            for _ in range(2):
                await schedule.run_once()
            _break(runtime, 401)
            await schedule.run_once()
            events = await _events(runtime)
            assert [kind for kind, _ in events] == [FAILED, RECOVERED, FAILED]
            first, recovered, second = (detail for _, detail in events)
            assert first["target"] == "provider:mock" and first["status"] == 503
            assert first["class"] == "http_503" and "503" in first["error"]
            assert recovered == {"target": "provider:mock"}
            assert second["status"] == 401
    asyncio.run(main())


def test_the_gateway_runs_the_checks_every_period(tmp_path: Path) -> None:
    raw = {**_FLAKY, "checks": {"every": "10s"}}

    async def main() -> None:
        loaded = make_loaded(tmp_path, raw)
        async with running_app(loaded) as client:
            # the first period starts with the gateway
            for _ in range(200):
                if "provider:mock" in client.runtime.checks:
                    break
                await asyncio.sleep(0.02)
            result = client.runtime.checks["provider:mock"]
            assert result.ok and result.model == "gpt-4o-mini"
    asyncio.run(main())


def test_three_replicas_on_redis_run_the_checks_once_per_period(tmp_path: Path) -> None:
    require_redis()
    prefix = fresh_prefix()
    raw = {**_FLAKY, "redis": {"url": REDIS_URL, "prefix": prefix},
           "checks": {"every": "30s"}}

    async def main() -> None:
        loaded = make_loaded(tmp_path, raw)
        try:
            async with running_app(loaded) as a, running_app(loaded) as b, \
                    running_app(loaded) as c:
                replicas = [a.app, b.app, c.app]
                schedules = [app._checks for app in replicas]
                assert all(s is not None for s in schedules)
                for _ in range(200):
                    if sum(s.runs for s in schedules if s):
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)  # the other two have asked by now, and heard no
                assert sorted(s.runs for s in schedules if s) == [0, 0, 1]
                # Within the period, asking again changes nothing, whoever asks.
                for schedule in schedules:
                    assert schedule is not None
                    assert await schedule.tick() is None
                assert sum(s.runs for s in schedules if s) == 1
                # A failure seen by the replica that ran is written once, and the others
                # (which read the state from the store) do not write it again.
                for app in replicas:
                    assert app.runtime is not None
                    _break(app.runtime, 500)
                for schedule in schedules:
                    assert schedule is not None
                    await schedule.run_once()
                assert a.runtime is not None
                assert [k for k, _ in await _events(a.runtime)] == [FAILED]
        finally:
            await delete_prefix(prefix)
    asyncio.run(main())


def test_workers_without_redis_run_the_checks_once_per_period(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `serve --workers 2` without Redis: each worker's counters are its own, so the counters'
    # lease grants both; the workers' lock file picks one (and another when it stops).
    with workers_lock() as path:
        monkeypatch.setenv(CHECKS_LOCK_ENV, path)
        loaded = make_loaded(tmp_path, {**_FLAKY, "checks": {"every": "1h"}})

        async def main() -> None:
            async with running_app(loaded) as one, running_app(loaded) as two:
                schedules = [one.app._checks, two.app._checks]
                for _ in range(100):  # each runs its first period at start
                    if sum(s.runs for s in schedules if s is not None) >= 1:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
                assert [s.runs for s in schedules if s is not None] in ([1, 0], [0, 1])
                first, other = sorted(schedules, key=lambda s: -s.runs if s else 0)
                assert first is not None and other is not None
                assert await other.tick() is None  # the lock is held: this period is not its
                await first.stop()  # the worker that held it is gone
                assert await other.tick() is not None
        asyncio.run(main())


def test_a_replica_that_finds_the_period_taken_drops_its_older_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its old pass, kept, would win `max by (target) (keystead_check_up)` over the failure the
    # replica that ran this period found.
    with workers_lock() as path:
        monkeypatch.setenv(CHECKS_LOCK_ENV, path)
        loaded = make_loaded(tmp_path, {**_FLAKY, "checks": {"every": "1h"}})

        async def main() -> None:
            async with running_app(loaded) as one, running_app(loaded) as two:
                for _ in range(100):
                    if one.app._checks is not None and one.app._checks.runs + (
                            two.app._checks.runs if two.app._checks else 0) >= 1:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
                schedules = [one.app._checks, two.app._checks]
                assert None not in schedules
                loser = next(s for s in schedules if s is not None and s.runs == 0)
                await loser.run_once()  # a manual run: an older result on this replica
                assert loser.rt.checks
                assert await loser.tick() is None
                assert loser.rt.checks == {}
        asyncio.run(main())
