"""Request log lines are held until the end of the event loop's tick (logs.LineSink): none may
be lost when `serve` stops on SIGTERM, alone or with workers sharing one stderr pipe, and none
when a process exits or dies of an unhandled error with lines still held."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from e2e.harness import Gateway, free_port, http, keystead_args, spawn, stop, wait_ready

pytestmark = pytest.mark.e2e


def _serve_on_pipe(gateway: Gateway, *extra: str) -> tuple[subprocess.Popen[bytes], str,
                                                          list[bytes]]:
    """`keystead serve` with stderr a pipe, read by a thread into a list of raw lines."""
    port = free_port()
    proc = spawn(keystead_args("serve", "--port", str(port), *extra, config=gateway.config),
                 cwd=gateway.dir, stderr=subprocess.PIPE)
    lines: list[bytes] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, b"")),
                              daemon=True)
    reader.start()
    base_url = f"http://127.0.0.1:{port}"
    log = gateway.dir / "unused.log"
    log.touch()
    wait_ready(base_url, proc, log)
    return proc, base_url, lines


def _chat(gateway: Gateway, base_url: str, request_id: str) -> None:
    status, _, _ = http("POST", base_url + "/v1/chat/completions",
                        body={"model": "gpt-4o-mini",
                              "messages": [{"role": "user", "content": request_id}]},
                        headers={"authorization": f"Bearer {gateway.keys['app']}",
                                 "x-request-id": request_id})
    assert status == 200


def _request_ids(lines: list[bytes]) -> list[str]:
    # Every JSON line whole: two lines interleaved would not parse. (The start-up summary
    # is plain text.)
    parsed: list[dict[str, Any]] = [json.loads(line) for line in lines if line.startswith(b"{")]
    assert not any(b'{"' in line for line in lines if not line.startswith(b"{"))
    return [p["request_id"] for p in parsed if p.get("event") == "request"]


def test_sigterm_right_after_requests_loses_no_line(gateway: Gateway) -> None:
    proc, base_url, lines = _serve_on_pipe(gateway)
    ids = [f"flush-{uuid.uuid4().hex[:8]}-{i}" for i in range(40)]
    try:
        for request_id in ids:
            _chat(gateway, base_url, request_id)
    finally:
        code = stop(proc)
    assert code == 0
    proc.wait()
    logged = [i for i in _request_ids(lines) if i.startswith("flush-")]
    assert logged == ids  # all of them, in order


def test_workers_share_a_pipe_whole_lines_none_lost(gateway: Gateway) -> None:
    proc, base_url, lines = _serve_on_pipe(gateway, "--workers", "2")
    ids = [f"wflush-{uuid.uuid4().hex[:8]}-{i}" for i in range(120)]
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda request_id: _chat(gateway, base_url, request_id), ids))
    finally:
        code = stop(proc)
    assert code == 0
    logged = [i for i in _request_ids(lines) if i.startswith("wflush-")]
    assert sorted(logged) == sorted(ids)


# A process that logs request lines on its loop, which stops before its next tick (when the
# held lines would have been written), then leaves: normally, by sys.exit or by an unhandled
# error (atexit: logging.shutdown and logs.flush_logs write them).
_CHILD = """
import asyncio, sys
from keystead.logs import configure_logging, log_request

configure_logging("info")

def log_lines():
    loop.stop()  # the loop returns after this callback: the flush queued for its tick never runs
    for i in range(500):
        log_request(b'{"event":"request","request_id":"child-%d"}' % i)

loop = asyncio.new_event_loop()
loop.call_soon(log_lines)
loop.run_forever()
if sys.argv[1] == "exit":
    sys.exit(3)
if sys.argv[1] == "error":
    raise RuntimeError("boom")
"""


@pytest.mark.parametrize(("how", "code"), [("return", 0), ("exit", 3), ("error", 1)])
def test_lines_held_at_exit_are_written(how: str, code: int) -> None:
    proc = spawn([sys.executable, "-c", _CHILD, how], stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    lines = err.splitlines()
    ids = [json.loads(line)["request_id"] for line in lines if b'"child-' in line]
    assert ids == [f"child-{i}" for i in range(500)]
    if how == "error":
        assert b"RuntimeError: boom" in err
