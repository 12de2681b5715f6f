"""SIGHUP reloads the config file; it never ends the process.

A SIGHUP's default action kills the process at once, in-flight requests and unwritten usage
records with it, and a closed terminal sends one. Like nginx, keystead answers it with a reload.
`catch_early` covers the start-up (the signal is remembered, and answered once the gateway
runs); `attach` hands it to the event loop. Reloads do not overlap: signals that arrive during
one make one more after it (the file may have changed again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from types import FrameType

__all__ = ["HangupReload"]

log = logging.getLogger("keystead.server")

SIGHUP: signal.Signals | None = getattr(signal, "SIGHUP", None)  # none on Windows


class HangupReload:
    def __init__(self) -> None:
        self._pending = False  # a SIGHUP came before the gateway ran: reload once it does
        self._again = False
        self._reload: Callable[[], Awaitable[object]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def catch_early(self) -> None:
        """From now on a SIGHUP is remembered, not fatal. Call it in the main thread."""
        if SIGHUP is not None:
            signal.signal(SIGHUP, self._remember)

    def _remember(self, _signum: int, _frame: FrameType | None) -> None:
        self._pending = True

    def attach(self, reload: Callable[[], Awaitable[object]]) -> None:
        """Answer SIGHUP with `reload()` in the running event loop (its main thread)."""
        if SIGHUP is None:
            return
        self._loop = asyncio.get_running_loop()
        self._reload = reload
        self._loop.add_signal_handler(SIGHUP, self.fire)
        if self._pending:
            self._pending = False
            self.fire()

    def fire(self) -> None:
        if self._reload is None or self._loop is None:
            self._pending = True
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = self._loop.create_task(self._run(), name="keystead-sighup-reload")

    async def _run(self) -> None:
        while True:
            self._again = False
            assert self._reload is not None
            try:
                await self._reload()
            except Exception:
                log.exception("reloading the config after SIGHUP failed")
            if not self._again:
                return

    async def detach(self) -> None:
        """Shutting down: no more reloads (one under way is cancelled: it changes nothing until
        its last step), and a SIGHUP is ignored until the process ends, so it cannot cut the
        last ledger flush short."""
        if SIGHUP is None or self._loop is None:
            return
        self._loop.remove_signal_handler(SIGHUP)
        signal.signal(SIGHUP, signal.SIG_IGN)
        self._reload = None
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
