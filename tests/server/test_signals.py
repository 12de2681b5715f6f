"""SIGHUP reloads and never kills (server/signals.py), with real signals sent to this process."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest

from keystead.server.signals import HangupReload

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP here")


@pytest.fixture(autouse=True)
def _restore_sighup() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, previous)


def hup() -> None:
    os.kill(os.getpid(), signal.SIGHUP)


class Reloads:
    """A reload that counts its runs; `gate` holds each run until set."""

    def __init__(self, fail_first: bool = False) -> None:
        self.runs: asyncio.Queue[int] = asyncio.Queue()
        self.count = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_first = fail_first

    async def __call__(self) -> None:
        self.count += 1
        self.runs.put_nowait(self.count)
        await self.gate.wait()
        if self.fail_first and self.count == 1:
            raise RuntimeError("boom")

    async def next(self) -> int:
        async with asyncio.timeout(5):
            return await self.runs.get()


def test_sighup_runs_a_reload_and_the_process_lives_on() -> None:
    async def main() -> None:
        reloads = Reloads()
        hangup = HangupReload()
        hangup.attach(reloads)
        hup()
        assert await reloads.next() == 1
        hup()
        assert await reloads.next() == 2
        await hangup.detach()
        hup()  # shutting down: ignored, never fatal
        await asyncio.sleep(0.05)
        assert reloads.count == 2

    asyncio.run(main())


def test_a_sighup_during_start_up_is_answered_once_the_gateway_runs() -> None:
    hangup = HangupReload()
    hangup.catch_early()
    hup()  # before any event loop: remembered, not fatal

    async def main() -> None:
        reloads = Reloads()
        hangup.attach(reloads)
        assert await reloads.next() == 1
        await hangup.detach()

    asyncio.run(main())


def test_sighups_during_a_reload_make_exactly_one_more() -> None:
    async def main() -> None:
        reloads = Reloads()
        reloads.gate.clear()
        hangup = HangupReload()
        hangup.attach(reloads)
        hangup.fire()
        assert await reloads.next() == 1
        for _ in range(3):  # the file may have changed again: one more read covers them all
            hup()
        await asyncio.sleep(0.05)
        reloads.gate.set()
        assert await reloads.next() == 2
        await asyncio.sleep(0.05)
        assert reloads.count == 2
        await hangup.detach()

    asyncio.run(main())


def test_a_failing_reload_is_logged_and_the_next_sighup_still_works(
        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        reloads = Reloads(fail_first=True)
        hangup = HangupReload()
        hangup.attach(reloads)
        hup()
        assert await reloads.next() == 1
        await asyncio.sleep(0.02)
        hup()
        assert await reloads.next() == 2
        await hangup.detach()

    asyncio.run(main())
    assert "reloading the config after SIGHUP failed" in caplog.text
