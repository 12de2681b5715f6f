"""`serve --workers N` without Redis: which worker runs a period's checks.

Each worker counts in its own memory there, so the counters' lease (schedule.py) grants every
one of them, and each would run the checks (and write the same check.failed event). `serve`
makes a private directory (0700) and names it in KEYSTEAD_CHECKS_LOCK before the workers start;
the worker that takes the lock on its file `lease` (flock) keeps it as long as it lives and
runs the checks, the others skip the period. A worker that dies lets go of it (the kernel does), and
another takes it at its next period. Without the variable (one process), or when the file
cannot be opened, every process runs them: a check run twice costs little, one skipped hides an
outage.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator

from keystead.private_files import private_dir_in_env

__all__ = ["CHECKS_LOCK_ENV", "WorkerLease", "workers_lock"]

log = logging.getLogger("keystead.checks")

CHECKS_LOCK_ENV = "KEYSTEAD_CHECKS_LOCK"


@contextlib.contextmanager
def workers_lock() -> Iterator[str]:
    """A fresh private directory for the lock file, named in KEYSTEAD_CHECKS_LOCK for the
    workers about to start; removed (and the variable restored) on exit."""
    with private_dir_in_env(CHECKS_LOCK_ENV, "keystead-checks-") as directory:
        yield str(directory)


class WorkerLease:
    def __init__(self, directory: str | None):
        """`directory`: what KEYSTEAD_CHECKS_LOCK names (None: one process, no lock)."""
        self._path = os.path.join(directory, "lease") if directory else None
        self._fd: int | None = None

    def held(self) -> bool:
        """True when this process may run the checks: it holds the lock (taken now, or before),
        or there is no lock to take."""
        if self._path is None or self._fd is not None:
            return True
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            log.warning("checks: the workers' lock file cannot be opened (%s); running this "
                        "period's checks without it", type(exc).__name__)
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another worker holds it
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # the lock goes with the descriptor
            self._fd = None
