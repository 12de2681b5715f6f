"""One outage of a backing service (the database, Redis), logged as one.

A loop that retries every second would otherwise log a traceback every second for as long as
the outage lasts. `OutageLog` logs the first failure with its traceback, then one short line at
most every `every_s` while it lasts, then one line when the thing works again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["OutageLog"]


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


class OutageLog:
    def __init__(self, logger: logging.Logger, what: str, every_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self._log = logger
        self._what = what  # "writing the usage ledger"
        self._every_s = every_s
        self._clock = clock
        self._since: float | None = None
        self._last_line = 0.0
        self._failures = 0

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        self._failures += 1
        if self._since is None:
            self._since = self._last_line = now
            self._log.error("%s failed; retrying, and logging it again at most every %.0fs "
                            "until it works", self._what, self._every_s, exc_info=exc)
            return
        if now - self._last_line >= self._every_s:
            self._last_line = now
            self._log.error("%s still failing after %.0fs (%d attempts): %s", self._what,
                            now - self._since, self._failures, _short(exc))

    def ok(self) -> None:
        if self._since is None:
            return
        self._log.warning("%s works again after %.1fs (%d failed attempts)", self._what,
                          self._clock() - self._since, self._failures)
        self._since = None
        self._failures = 0
