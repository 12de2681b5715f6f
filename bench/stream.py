"""Streaming figures: time to first byte and SSE events per second, through a target or direct.

wrk's Lua cannot time the first body byte of a response, so the load comes from this file run
as its own process (`python -m bench.stream --url ...`), pinned to the load CPU: asyncio (uvloop
when installed) over plain keep-alive HTTP/1.1 sockets, one task per connection, each POSTing a
streamed chat request, reading the whole stream, then sending the next. It reports its own CPU
use: near 100 % of a core means the figures are the client's limit, not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.targets import Target, start_keystead

# include_usage so that keystead passes the usage chunk on, as the upstream direct sends it:
# both then deliver the same events (16 deltas + role + finish + usage + [DONE] from nginx).
STREAM_BODY = ('{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},'
               '"messages":[{"role":"user","content":"Say hello"}]}')


def measure_stream(url: str, key: str | None, *, seconds: float, connections: int,
                   cpu: str | None, warmup: float = 1.0,
                   server_pids: list[int] | None = None) -> dict[str, object]:
    """Load `url` with streamed chat requests from a pinned subprocess; returns its figures.
    With `server_pids`, also the CPU those processes used in the window, per event."""
    command = [sys.executable, "-m", "bench.stream", "--url", url, "--seconds", str(seconds),
               "--connections", str(connections), "--warmup", str(warmup)]
    if key:
        command += ["--key", key]
    for pid in server_pids or ():
        command += ["--server-pid", str(pid)]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", cpu, *command]
    output = subprocess.run(command, capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parent.parent).stdout
    return dict(json.loads(output.splitlines()[-1]))


def start_keystead_stream_target(upstream: str, cpu: str | None) -> Target:
    """keystead with its provider's base_url at `<upstream>/stream/v1` (nginx's SSE answer).

    start_keystead writes `base_url: <its upstream>/v1`, so handing it `<upstream>/stream` is
    enough. Its readiness probe is a streamed request: nginx answers every request with SSE
    bytes, which keystead rightly refuses as a malformed answer to a non-streamed one.
    """
    return start_keystead(f"{upstream}/stream", cpu=cpu, name="keystead (stream)",
                          probe_body=STREAM_BODY)


class _Stats:
    def __init__(self) -> None:
        self.ttfb_s: list[float] = []
        self.streams = 0
        self.events = 0
        self.errors = 0


async def _read_stream(reader: asyncio.StreamReader, sent: float) -> tuple[int, float, bytes, bool]:
    """One response: (status, seconds to the first body bytes, body, connection still usable)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = {name.strip().lower(): value.strip() for name, _, value in
               (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)}
    body = bytearray()
    first = 0.0
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            first = first or time.perf_counter()
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass  # trailers
                break
            body += (await reader.readexactly(size + 2))[:-2]
        keep = True
    elif b"content-length" in headers:
        length = int(headers[b"content-length"])
        if length:
            body += await reader.read(length)
            first = time.perf_counter()
            body += await reader.readexactly(length - len(body))
        keep = True
    else:  # body until the server closes
        while chunk := await reader.read(65536):
            first = first or time.perf_counter()
            body += chunk
        keep = False
    keep = keep and headers.get(b"connection", b"").lower() != b"close"
    return status, (first or time.perf_counter()) - sent, bytes(body), keep


async def _connection(url: str, request: bytes, start: float, end: float, stats: _Stats) -> None:
    parts = urlsplit(url)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < end:
        sent = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
                sent = time.perf_counter()
            assert reader is not None
            writer.write(request)
            async with asyncio.timeout(10):  # TimeoutError is an OSError: counted, reconnected
                status, ttfb, body, keep = await _read_stream(reader, sent)
            done = time.perf_counter()
            if not keep:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            if sent >= start:
                stats.errors += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
            continue
        if sent < start or done > end:
            continue  # warm-up, or finished after the window
        if status == 200 and b"data: [DONE]" in body:
            stats.streams += 1
            stats.ttfb_s.append(ttfb)
            stats.events += body.count(b"\ndata:") + body.startswith(b"data:")
        else:
            stats.errors += 1
    if writer is not None:
        writer.close()


async def _load(url: str, key: str | None, seconds: float, connections: int,
                warmup: float, server_pids: list[int]) -> dict[str, object]:
    parts = urlsplit(url)
    body = STREAM_BODY.encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    request = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               f"Content-Type: application/json\r\nAccept: text/event-stream\r\n{auth}"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    stats = _Stats()
    start = time.perf_counter() + warmup
    end = start + seconds
    tasks = [asyncio.create_task(_connection(url, request, start, end, stats))
             for _ in range(connections)]
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    cpu_start, server_start = _cpu_seconds(), _process_cpu_seconds(server_pids)
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    cpu_used = _cpu_seconds() - cpu_start
    server_used = _process_cpu_seconds(server_pids) - server_start
    await asyncio.gather(*tasks)
    ttfb = sorted(stats.ttfb_s)

    def percentile(p: float) -> float | None:
        return round(ttfb[min(len(ttfb) - 1, int(p * len(ttfb)))] * 1000, 3) if ttfb else None

    return {
        "connections": connections, "seconds": seconds,
        "streams": stats.streams, "errors": stats.errors,
        "streams_per_s": round(stats.streams / seconds, 1),
        "events_per_s": round(stats.events / seconds, 1),
        "events_per_stream": round(stats.events / stats.streams, 2) if stats.streams else None,
        "ttfb_p50_ms": percentile(0.50), "ttfb_p99_ms": percentile(0.99),
        "client_cpu_pct": round(100 * cpu_used / seconds, 1),
        **({"server_cpu_pct": round(100 * server_used / seconds, 1),
            "server_cpu_us_per_event": round(server_used / stats.events * 1e6, 2)
            if stats.events else None} if server_pids else {}),
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of other processes, from /proc/PID/stat."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream", description=__doc__)
    parser.add_argument("--url", required=True, help="a chat completions URL")
    parser.add_argument("--key")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--server-pid", type=int, action="append", default=[],
                        help="also report this process's CPU per event (repeatable)")
    args = parser.parse_args()
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(_load(args.url, args.key, args.seconds, args.connections,
                                  args.warmup, args.server_pid))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
