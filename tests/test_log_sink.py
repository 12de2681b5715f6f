"""logs.LineSink: request lines batched per loop tick into whole-line writes of at most PIPE_BUF
bytes on a pipe, in order; a full pipe never blocks the loop for long and loses no line
silently. (Exit and SIGTERM, with real processes: tests/e2e/test_log_flush.py.)"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import threading
import time
from collections.abc import Iterator

import pytest

from keystead import logs


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    """A pipe whose write end is the log sink's stream; the root logger restored after."""
    root = logging.getLogger()
    handlers, level, sink = list(root.handlers), root.level, logs._sink
    read, write = os.pipe()
    stream = os.fdopen(write, "w")
    logs.configure_logging("info", stream)
    try:
        yield read, write
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        logs._sink = sink
        stream.close()
        os.close(read)


def _line(i: int) -> bytes:
    return json.dumps({"event": "request", "request_id": f"r{i}", "pad": "x" * 600}).encode()


def _read_all(fd: int, lines: int = 1, timeout: float = 5.0) -> bytes:
    """What the pipe holds, read until `lines` lines came (or `timeout`, then what came)."""
    out = b""
    deadline = time.monotonic() + timeout
    while out.count(b"\n") < lines and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.05)[0]:
            out += os.read(fd, 1 << 16)
    return out


def test_a_tick_of_lines_goes_out_in_whole_line_writes_below_pipe_buf(
        pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    real = logs._write_all
    monkeypatch.setattr(logs, "_write_all", lambda fd, data: (writes.append(data),
                                                              real(fd, data)))

    async def main() -> None:
        for tick in range(5):
            for i in range(10):
                logs.log_request(_line(tick * 10 + i))
            await asyncio.sleep(0)

    asyncio.run(main())  # 50 lines, ~33 KB: the pipe takes them all
    assert all(len(w) <= select.PIPE_BUF and w.endswith(b"\n") for w in writes)
    assert len(writes) <= 5 * 3  # batched: several lines per write
    lines = _read_all(pipe[0], 50).splitlines()
    assert [json.loads(line)["request_id"] for line in lines] == [f"r{i}" for i in range(50)]


def test_a_full_pipe_does_not_block_the_loop_and_loses_nothing(pipe: tuple[int, int]) -> None:
    count = 400  # ~250 KB: several times a pipe's 64 KB

    async def main() -> float:
        started = time.monotonic()
        for i in range(count):
            logs.log_request(_line(i))
            if i % 10 == 9:
                await asyncio.sleep(0)
        spent = time.monotonic() - started
        # Now a reader drains the pipe: the loop, watching the pipe, writes the rest.
        lines = (await asyncio.to_thread(_read_all, pipe[0], count)).splitlines()
        assert [json.loads(line)["request_id"] for line in lines] == \
            [f"r{i}" for i in range(count)]
        return spent

    assert asyncio.run(main()) < 0.5  # nothing waited for the pipe


def test_past_the_bound_lines_are_counted_and_the_count_logged(
        pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "MAX_PENDING_BYTES", 100_000)
    monkeypatch.setattr(logs, "FULL_WAIT_S", 0.05)
    count = 600  # 64 KB in the pipe + 100 KB held, the rest dropped

    async def main() -> list[bytes]:
        started = time.monotonic()
        for i in range(count):
            logs.log_request(_line(i))
        assert time.monotonic() - started < 0.5  # waited once, 50 ms, then dropped
        # Read until the notice came (the pipe's lines, the held ones, then the count).
        out = b""
        while b"log_lines_dropped" not in out:
            chunk = await asyncio.to_thread(_read_all, pipe[0], out.count(b"\n") + 1, 2.0)
            assert chunk, "no notice of the dropped lines"
            out += chunk
        return out.splitlines()

    lines = [json.loads(line) for line in asyncio.run(main())]
    kept = [line["request_id"] for line in lines if line.get("event") == "request"]
    notices = [line for line in lines if line.get("event") == "log_lines_dropped"]
    assert kept == [f"r{i}" for i in range(len(kept))]  # the first ones, in order
    assert len(notices) == 1 and notices[0]["level"] == "error"
    assert notices[0]["count"] == count - len(kept) > 0


def test_another_listener_gets_the_line_through_logging(
        pipe: tuple[int, int], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="keystead.request")

    async def main() -> None:
        logs.log_request(_line(1))
        await asyncio.sleep(0)

    asyncio.run(main())
    assert [r.msg for r in caplog.records if r.name == "keystead.request"] == [_line(1)]
    assert json.loads(_read_all(pipe[0]))["request_id"] == "r1"  # and the sink wrote it once


def test_operational_lines_are_written_at_once_behind_held_request_lines(
        pipe: tuple[int, int]) -> None:
    async def main() -> bytes:
        logs.log_request(_line(1))
        logging.getLogger("keystead.server").warning("something happened")
        return _read_all(pipe[0])  # before the tick ends

    lines = [json.loads(line) for line in asyncio.run(main()).splitlines()]
    assert [line.get("request_id") or line["msg"] for line in lines] == \
        ["r1", "something happened"]


def test_a_closed_stderr_never_raises_into_the_request_and_holds_nothing(
        pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody reads stderr any more (EPIPE): as logging's own handler, the sink gives the lines
    up; it neither raises into `settle` nor keeps them (retrying them on every tick)."""
    read, _ = pipe
    devnull = os.open(os.devnull, os.O_RDONLY)  # put back at `read` after, for the fixture
    os.close(read)
    sink = logs._sink
    assert sink is not None
    monkeypatch.setattr(logging.getLogger(), "handlers", [sink])  # the fast path, as in serve

    async def main() -> None:
        for i in range(200):  # ~130 KB: many batches' worth
            logs.log_request(_line(i))
            if i % 10 == 9:
                await asyncio.sleep(0)
        logging.getLogger("keystead.server").warning("after")
        await asyncio.sleep(0.1)

    try:
        asyncio.run(main())
        assert sink._pending == [] and sink._pending_bytes == 0
        sink.flush()  # at exit: nothing raised either
    finally:
        os.dup2(devnull, read)
        os.close(devnull)


def test_a_line_longer_than_pipe_buf_waits_for_room_without_blocking_the_loop(
        pipe: tuple[int, int]) -> None:
    """os.write of more than the pipe has room for blocks until a reader makes room: a long
    line (a traceback) is written from the loop only into an empty pipe."""
    read, write = pipe
    os.set_blocking(write, False)
    try:
        while True:
            os.write(write, b"x" * 1000 + b"\n")
    except BlockingIOError:
        pass
    finally:
        os.set_blocking(write, True)
    os.read(read, 4096)  # a page of room: the pipe polls writable, 8 KB does not fit
    long_message = "y" * 8000
    spent: list[float] = []
    logged = threading.Event()

    async def main() -> None:
        started = time.monotonic()
        logging.getLogger("keystead.server").error(long_message)
        await asyncio.sleep(0.1)
        spent.append(time.monotonic() - started)
        logged.set()
        sink = logs._sink
        assert sink is not None
        for _ in range(100):  # the loop writes it once the reader below emptied the pipe
            if not sink._pending:
                break
            await asyncio.sleep(0.05)

    runner = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    runner.start()
    blocked = not logged.wait(2.0)
    out = b""
    deadline = time.monotonic() + 10
    while b'"error"' not in out and time.monotonic() < deadline:  # the reader
        out += _read_all(read, out.count(b"\n") + 1, 0.5)
    runner.join(5.0)
    assert not blocked, "the loop was blocked on the pipe"
    assert spent and spent[0] < 0.5
    assert json.loads(out.splitlines()[-1])["msg"] == long_message  # whole, after the rest
