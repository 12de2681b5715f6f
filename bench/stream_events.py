"""keystead's CPU per streamed event, against the bare pass-through and the upstream direct.

The upstream is bench/sse_upstream.py: one write per SSE event, `--delay-ms` apart, so every
event reaches the server under test in its own read. Servers under test run pinned to CPU 0;
the upstream and the load (bench/stream.py's client) share CPU 1. For each target the client
reads the server's CPU time (/proc/PID/stat) at the start and the end of its window: CPU
microseconds per event is that time over the events the client received in the window.

    python -m bench.stream_events [--events 100] [--delay-ms 1] [--connections 32]
        [--seconds 5] [--only direct,floor,keystead] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.procs import Proc, _children, free_port, wait_http
from bench.stream import STREAM_BODY, measure_stream
from bench.targets import start_keystead

SERVER_CPU, LOAD_CPU = "0", "1"


def start_sse_upstream(events: int, delay_ms: float) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc.start("sse-upstream", [sys.executable, "-m", "bench.sse_upstream", "--port",
                                       str(port), "--events", str(events), "--delay-ms",
                                       str(delay_ms)],
                      cpu=LOAD_CPU, cwd=str(Path(__file__).parent.parent))
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/v1/chat/completions", method="POST", body=STREAM_BODY.encode())
    return proc, base


def start_stream_floor(upstream: str) -> tuple[Proc, str, str]:
    key, port = "floor-bench-key", free_port()
    proc = Proc.start("stream-floor", [sys.executable, str(Path(__file__).with_name(
        "stream_floor.py")), "--port", str(port), "--upstream", upstream, "--key", key],
        cpu=SERVER_CPU)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    wait_http(url, method="POST", body=STREAM_BODY.encode(),
              headers={"authorization": f"Bearer {key}"})
    return proc, url, key


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_events", description=__doc__)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--delay-ms", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1, help="targets alternated this often")
    parser.add_argument("--only", default="direct,floor,keystead")
    args = parser.parse_args()
    only = args.only.split(",")
    upstream, base = start_sse_upstream(args.events, args.delay_ms)
    procs: list[Proc] = [upstream]
    targets: list[tuple[str, str, str | None, list[int]]] = []
    try:
        if "direct" in only:
            targets.append(("upstream direct", base + "/v1/chat/completions", None,
                            [upstream.popen.pid]))
        if "floor" in only:
            proc, url, key = start_stream_floor(base)
            procs.append(proc)
            # granian serves from a worker process it forks
            targets.append(("python floor (granian rsgi+aiohttp, streamed)", url, key,
                            [proc.popen.pid, *_children(proc.popen.pid)]))
        if "keystead" in only:
            target = start_keystead(base, cpu=SERVER_CPU, name="keystead (sse)",
                                    probe_body=STREAM_BODY)
            assert target.proc is not None
            procs.append(target.proc)
            targets.append(("keystead", target.url, target.key, [target.proc.popen.pid]))
        for round_ in range(args.rounds):
            for name, url, key, pids in targets:
                result = measure_stream(url, key, seconds=args.seconds,
                                        connections=args.connections, cpu=LOAD_CPU,
                                        server_pids=pids)
                print(json.dumps({"target": name, "round": round_, **result}), flush=True)
    finally:
        for proc in reversed(procs):
            proc.stop()


if __name__ == "__main__":
    main()
