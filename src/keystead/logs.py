"""Logs as JSON lines on stderr (P21): one line per request, plus operational messages.

Request lines carry the ledger's fields: ids, names, models, tokens, cost, latency, status.
Never key text, provider keys or bodies: the request line is built from a fixed list of fields.

Lines are written by `LineSink` (docs/operations.md#logs): a request line logged on the event
loop waits in memory until the end of the loop's current tick, and all the lines of a tick go
out in a few whole-line writes instead of one write per line. `log_request` skips the
`LogRecord` when the sink is the only listener (no test's caplog, no embedding app's handler).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import logging
import os
import select
import stat
import sys
import termios
import threading
import time
from typing import Any, TextIO

import orjson

__all__ = ["LineSink", "configure_logging", "flush_logs", "log_request", "request_logger"]

request_logger = logging.getLogger("keystead.request")
_REQUEST = "keystead.request"
_INFO = logging.INFO
_root = logging.getLogger()

# Several `--workers` share one stderr: a write to a pipe of at most PIPE_BUF bytes is never
# interleaved with another process's, so every write is whole lines and at most PIPE_BUF bytes
# (a single longer line goes alone, as it did with one write per line). A regular file has no
# such limit (the kernel serialises writes on a shared file offset).
_FILE_BATCH = 64 * 1024
# Lines held while stderr is not writable (a full pipe: the reader is slow or stopped). When
# they reach this, the loop waits for the pipe (as logging's blocking write did) for at most
# FULL_WAIT_S; if it is still full then, new lines are counted, not kept, until the pipe takes
# lines again, and the count is logged then.
MAX_PENDING_BYTES = 4 * 1024 * 1024
FULL_WAIT_S = 1.0
_RETRY_S = 0.05  # how often a full pipe is looked at again where the loop cannot watch it
_EXIT_WAIT_S = 5.0  # at exit, how long a full pipe is waited for before the rest is given up


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name == _REQUEST and isinstance(record.msg, bytes):
            return record.msg.decode()
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class LineSink(logging.Handler):
    """Writes log lines to a file descriptor in batches of whole lines, in the order logged.

    - A request line logged on a running event loop is held until the end of the loop's tick
      (one `call_soon`), or until a batch is full; any other line is written at once, behind
      the held ones.
    - Lines logged where no loop runs (a CLI command, a thread) are written at once.
    - On the loop a full pipe never blocks: what cannot be written waits (bounded by
      MAX_PENDING_BYTES), and is written when the loop sees the pipe writable again. When
      that much waits, the loop waits for the pipe, at most FULL_WAIT_S; a pipe still full
      then has lines counted as dropped (not kept) until it takes lines, and the count is
      logged (`"event": "log_lines_dropped"`). Elsewhere the write waits for the pipe, as
      logging's own does. A line longer than PIPE_BUF waits for an empty pipe (see
      `_writable`).
    - `flush()` (at exit: logging's atexit hook; SIGTERM ends `serve` through SystemExit)
      writes what is held, waiting at most 5 s for a full pipe.
    """

    def __init__(self, stream: TextIO, formatter: logging.Formatter | None = None) -> None:
        super().__init__()
        self.setFormatter(formatter or _JSONFormatter())
        self._stream = stream
        self._fd = stream.fileno()
        mode = os.fstat(self._fd).st_mode
        self._poll: select.poll | None = None
        self._fifo = stat.S_ISFIFO(mode)
        self._await_empty = False  # a long line waits for an empty pipe: look again later
        if stat.S_ISREG(mode):
            self._batch = _FILE_BATCH
        else:
            self._batch = select.PIPE_BUF
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLOUT)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        # The loop a flush is queued on (a loop closed before its flush ran: the next one
        # queues its own), and the loop a retry of a full pipe is queued on.
        self._scheduled: asyncio.AbstractEventLoop | None = None
        self._retrying: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop that retries a full pipe
        self.dropped = 0  # lines not kept while stderr was full, not reported yet
        self._stalled = False  # waited FULL_WAIT_S for a full pipe in vain: dropping lines

    # logging.Handler.handle holds self.lock around emit.
    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.name == _REQUEST and isinstance(record.msg, bytes):
                self._add(record.msg + b"\n", defer=True)
            else:
                self._add(self.format(record).encode() + b"\n", defer=False)
        except Exception:
            self.handleError(record)

    def add_request_line(self, line: bytes) -> None:
        """A request line (no newline) from `log_request`, without a LogRecord."""
        with self.lock:  # type: ignore[union-attr]
            self._add(line + b"\n", defer=True)

    def _add(self, line: bytes, *, defer: bool) -> None:
        loop = asyncio._get_running_loop()
        if loop is None:  # no loop in this thread: write now, behind what is held
            self._keep(line)
            self._drain(block=self._loop is None or self._loop.is_closed())
            return
        self._loop = loop
        self._keep(line)
        if self._retrying is loop:  # the pipe is full: the queued retry writes it
            return
        if defer and self._pending_bytes < self._batch:
            if self._scheduled is not loop:
                self._scheduled = loop
                loop.call_soon(self._tick)
            return
        self._drain(block=False)

    def _keep(self, line: bytes) -> None:
        if self._pending_bytes >= MAX_PENDING_BYTES and not self._stalled:
            # A slow reader: wait for it, bounded (back-pressure, as a blocking write gave).
            self._drain(block=True, deadline=time.monotonic() + FULL_WAIT_S)
            self._stalled = self._pending_bytes >= MAX_PENDING_BYTES
        if self._stalled:
            self.dropped += 1
            return
        self._pending.append(line)
        self._pending_bytes += len(line)

    def _tick(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled = None
            self._drain(block=False)

    def _watch(self) -> None:
        """On the loop: write again as soon as the pipe takes bytes (or every 50 ms where the
        loop cannot watch this descriptor)."""
        loop = self._loop
        assert loop is not None
        try:
            if self._await_empty:  # writable, but not empty: the writer would fire at once
                loop.call_later(_RETRY_S, self._writable_again)
                return
            loop.add_writer(self._fd, self._writable_again)
        except (NotImplementedError, OSError, ValueError):
            loop.call_later(_RETRY_S, self._writable_again)

    def _writable_again(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(NotImplementedError, OSError, ValueError):
                loop.remove_writer(self._fd)
        with self.lock:  # type: ignore[union-attr]
            self._retrying = None
            self._drain(block=False)

    def _drain(self, *, block: bool, deadline: float | None = None) -> None:
        """Write what is held, whole lines, at most one batch per write. Not blocking: stop
        at a full pipe and come back later from the loop."""
        if self.dropped and self._pending_bytes < MAX_PENDING_BYTES:
            notice = orjson.dumps({
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "error",
                "logger": "keystead.logs", "event": "log_lines_dropped", "count": self.dropped,
                "msg": f"{self.dropped} log lines were dropped: stderr took no lines while "
                       f"{MAX_PENDING_BYTES} bytes of lines waited"})
            self.dropped = 0
            self._pending.append(notice + b"\n")
            self._pending_bytes += len(notice) + 1
        pending = self._pending
        done = 0  # lines written
        try:
            while done < len(pending):
                if self._poll is not None \
                        and not self._writable(block, deadline, len(pending[done])):
                    break
                end, size = done + 1, len(pending[done])
                while end < len(pending) and size + len(pending[end]) <= self._batch:
                    size += len(pending[end])
                    end += 1
                data = pending[done] if end == done + 1 else b"".join(pending[done:end])
                try:
                    _write_all(self._fd, data)
                except OSError:
                    # stderr is gone (EPIPE, EBADF): nothing will ever take these lines.
                    # Give them up, as logging's own handler did (`handleError`), rather
                    # than raise into the request that logged one and retry them each tick.
                    done = len(pending)
                    break
                done = end
        finally:
            if done:
                del pending[:done]
                self._pending_bytes = sum(map(len, pending)) if pending else 0
                self._stalled = False
        loop = self._loop
        if pending and not block and loop is not None and self._retrying is not loop \
                and not loop.is_closed():
            self._retrying = loop
            loop.call_soon_threadsafe(self._watch)

    def _writable(self, block: bool, deadline: float | None, size: int) -> bool:
        """Whether a write of `size` bytes goes through without waiting. A writable pipe has
        room for PIPE_BUF bytes; a longer line (a traceback) blocks `os.write` until all of it
        fits, so it is written only into an empty pipe, which holds 64 KB."""
        assert self._poll is not None
        self._await_empty = False
        if block and deadline is None:
            return True  # a blocking write waits for the pipe, as logging's own does
        while True:
            wait_ms = 0 if deadline is None else \
                max(0, int((deadline - time.monotonic()) * 1000))
            if not self._poll.poll(wait_ms):
                return False
            if size <= self._batch or not self._fifo or _pipe_empty(self._fd):
                return True
            if deadline is None or time.monotonic() >= deadline:
                self._await_empty = True
                return False
            time.sleep(_RETRY_S / 5)

    def flush(self) -> None:
        """Write every held line now (at exit, at shutdown), waiting at most 5 s for a full
        pipe; what still cannot be written after that is lost (nothing reads it any more)."""
        with self.lock:  # type: ignore[union-attr]
            self._drain(block=True, deadline=time.monotonic() + _EXIT_WAIT_S)
            self._pending.clear()
            self._pending_bytes = 0


def _pipe_empty(fd: int) -> bool:
    queued = bytearray(4)
    try:
        fcntl.ioctl(fd, termios.FIONREAD, queued)
    except OSError:
        return True  # cannot tell (or stderr is gone: the write says so)
    return int.from_bytes(queued, sys.byteorder) == 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


_sink: LineSink | None = None


def log_request(line: bytes) -> None:
    """Log a request line (JSON, no newline). When the sink is the only handler it will reach,
    the line goes straight to it: logging's LogRecord, lookups and locks cost several times the
    write itself. Otherwise (a test's caplog, a handler added by an embedding application) it
    goes through `request_logger` as a bytes message."""
    sink = _sink
    handlers = _root.handlers
    if sink is not None and len(handlers) == 1 and handlers[0] is sink \
            and not request_logger.handlers \
            and request_logger.isEnabledFor(_INFO) and _only_root_listens():
        sink.add_request_line(line)
        return
    request_logger.info(line)


def _only_root_listens() -> bool:
    logger: logging.Logger | None = request_logger
    while logger is not None and logger is not _root:
        if logger.handlers or logger.filters or not logger.propagate or logger.disabled:
            return False
        logger = logger.parent
    return not _root.filters and not _sink_filters()


def _sink_filters() -> bool:
    return _sink is None or bool(_sink.filters) or _sink.level > _INFO


def flush_logs() -> None:
    """Write the held log lines now (at shutdown)."""
    if _sink is not None:
        _sink.flush()


def configure_logging(level: str = "info", stream: Any = None) -> None:
    global _sink
    out = stream or sys.stderr
    try:
        out.flush()  # what was printed before goes first
        handler: logging.Handler = LineSink(out)
    except (AttributeError, OSError, ValueError):  # no file descriptor (a StringIO): plain
        handler = logging.StreamHandler(out)
        handler.setFormatter(_JSONFormatter())
    root = _root
    for existing in list(root.handlers):
        existing.flush()  # a sink being replaced writes what it holds first
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    _sink = handler if isinstance(handler, LineSink) else None
    for noisy in ("uvicorn.access", "aiosqlite", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").propagate = True
    _flush_at_exit()


_hooked = threading.Lock()
_hooks_done = False


def _flush_at_exit() -> None:
    """logging's own atexit hook flushes handlers; these cover what it does not: a
    multiprocessing worker (`serve --workers`) leaves through os._exit, after its
    finalizers."""
    global _hooks_done
    with _hooked:
        if _hooks_done:
            return
        _hooks_done = True
    atexit.register(flush_logs)
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, flush_logs, exitpriority=100)
