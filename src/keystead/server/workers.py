"""`keystead serve --workers N`: uvicorn's supervisor, with SIGHUP passed on to the workers.

uvicorn's own supervisor answers SIGHUP by replacing every worker with a new process. That
re-reads the config too, but it throws away what each worker holds in memory (its cache, its
counters without Redis, its breakers), and an unreadable file leaves it to uvicorn to notice
that the new worker never came up. Passing the signal on instead makes each worker reload in
place the way a single process does (server/signals.py): nothing is restarted, nothing in
flight is touched, and a bad file is refused by each worker with the same message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from socket import socket

from uvicorn import Config
from uvicorn.supervisors.multiprocess import Multiprocess

__all__ = ["ReloadingSupervisor", "run_workers"]

log = logging.getLogger("keystead.server")


class ReloadingSupervisor(Multiprocess):
    def handle_hup(self) -> None:
        log.info("SIGHUP: every worker re-reads the config")
        for process in self.processes:
            pid = process.pid
            if pid is not None and process.exitcode is None:
                # One that just ended is replaced by the supervisor, and reads the file anew.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)

    def keep_subprocess_alive(self) -> None:
        """A worker that died is replaced (uvicorn); its live metrics gauges stop counting."""
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        gone = before - {process.pid for process in self.processes}
        for pid in gone:
            if pid is not None:
                from keystead.metrics.multiproc import mark_dead

                mark_dead(pid)


def run_workers(config: Config) -> None:
    """What `uvicorn.run(..., workers=N)` does, with our supervisor."""
    sockets: list[socket] = [config.bind_socket()]
    ReloadingSupervisor(config, sockets=sockets).run()
