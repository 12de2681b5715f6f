"""`--workers N`: one scrape sees every worker's counts (prometheus-client multiprocess mode).

`keystead serve` makes a fresh private directory (0700) and names it in PROMETHEUS_MULTIPROC_DIR
before the workers start; each worker's counters and histograms write to their own files there,
and the worker that answers a scrape reads them all. The supervisor marks a dead worker's live
gauges as gone (`mark_dead`) and the directory is removed when `serve` exits. A single process
does not use it (its counters stay in memory: faster). Nothing here imports prometheus-client
unless a worker died.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from keystead.private_files import private_dir_in_env

__all__ = ["MULTIPROC_ENV", "mark_dead", "multiprocess_dir", "single_process"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """A fresh 0700 directory in PROMETHEUS_MULTIPROC_DIR for the workers' metric files, removed
    (and the variable restored) on exit."""
    with private_dir_in_env(MULTIPROC_ENV, "keystead-metrics-") as path:
        yield path


def single_process() -> None:
    """One process keeps its metrics in memory: a variable left in the environment (by a
    wrapper, a shell) must not switch it to files in a directory nobody cleans."""
    os.environ.pop(MULTIPROC_ENV, None)
    os.environ.pop(MULTIPROC_ENV.lower(), None)


def mark_dead(pid: int) -> None:
    """A worker died: its live gauges (in flight, ledger queue) no longer count."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
