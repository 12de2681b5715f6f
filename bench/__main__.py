"""`python -m bench`: keystead against the fake upstream called directly, the Python floors
(uvicorn + httpx, uvicorn + aiohttp, granian RSGI + uvloop + aiohttp: the fastest) and two peers,
LiteLLM's proxy (Python) and Portkey's gateway (Node), on one machine, in one run.

The server under test is pinned to CPU 0; wrk and the fake upstream share CPU 1. Each target is
started alone, warmed up, then loaded with 32 connections (throughput) and 1 connection
(latency), then stopped. Results: a table on stdout, JSON in bench/results/latest.json.

    python -m bench [--seconds 10] [--quick] [--only keystead,floor-httpx,...]
    python -m bench soak [--minutes 10]
    python -m bench cli [--runs 9] [--src DIR]   (CLI start-up: bench/cli.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench.load import LoadResult, run_wrk, wrk_available
from bench.procs import Proc
from bench.targets import SIGNALS, Target, start_floor, start_keystead
from bench.upstream import start_upstream

RESULTS = Path(__file__).parent / "results"
# Measured only when named in --only: granian's ASGI interface, slower than its RSGI one (kept to
# re-check that choice), and the floors on keystead's h1 client or pyreqwest (the transport
# comparison in docs/performance.md).
OPT_IN = {"floor-granian-asgi", "floor-granian-h1", "floor-granian-pyreqwest", "floor-h1"}
COLUMNS = ("target", "rps_32", "cpu_us_32", "p50_ms_32", "p99_ms_32", "rps_1", "p50_ms_1",
           "p99_ms_1", "non_2xx", "rss_mb", "cold_start_s")


def measure(target: Target, *, seconds: float, cpu: str | None) -> dict[str, object]:
    def load(connections: int, duration: float) -> LoadResult:
        return run_wrk(target.url, connections=connections, seconds=duration, key=target.key,
                       cpu=cpu, body=target.body, headers=target.headers)

    load(32, min(2.0, seconds))  # warm-up
    cpu_before = target.proc.cpu_seconds() if target.proc else None
    busy = load(32, seconds)
    # the server's CPU per request at 32 connections (all its processes and threads): steadier
    # than requests per second on a shared machine
    cpu_us = None if cpu_before is None or target.proc is None or not busy.requests else \
        round((target.proc.cpu_seconds() - cpu_before) / busy.requests * 1e6, 1)
    single = load(1, seconds)
    return {
        "target": target.name,
        "rps_32": busy.rps, "cpu_us_32": cpu_us, "p50_ms_32": busy.p50_ms, "p99_ms_32": busy.p99_ms,
        "rps_1": single.rps, "p50_ms_1": single.p50_ms, "p99_ms_1": single.p99_ms,
        "non_2xx": busy.non_2xx + single.non_2xx,
        "socket_errors": busy.socket_errors + single.socket_errors,
        "rss_mb": target.proc.rss_mb() if target.proc else None,
        "cold_start_s": target.cold_start_s,
        "load": {"32": asdict(busy), "1": asdict(single)},
    }


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join("-" if row.get(h) is None else str(row.get(h))
                                       for h in COLUMNS) + " |")
    return "\n".join(lines)


def _ratios(rows: list[dict[str, object]]) -> dict[str, float]:
    """Each keystead's throughput against every other target, and its added median latency."""
    mine = [r for r in rows if str(r["target"]).startswith("keystead")]
    direct = next((r for r in rows if str(r["target"]).startswith("upstream direct")), None)
    out: dict[str, float] = {}
    for keystead in mine:
        name = keystead["target"]
        for row in rows:
            if row in mine or row is direct or not row.get("rps_32"):
                continue
            out[f"{name} / {row['target']} (rps at 32)"] = round(
                float(keystead["rps_32"]) / float(row["rps_32"]), 2)  # type: ignore[arg-type]
        if direct is not None:
            out[f"{name} added p50 ms at 1 connection"] = round(
                float(keystead["p50_ms_1"]) - float(direct["p50_ms_1"]),  # type: ignore[arg-type]
                3)
    return out


def _redis_url() -> str | None:
    """Redis for the 'keystead with Redis counters' target: $KEYSTEAD_BENCH_REDIS_URL, or a
    local server if one answers."""
    import socket

    url = os.environ.get("KEYSTEAD_BENCH_REDIS_URL")
    if url:
        return url
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
    except OSError:
        print("no Redis on 127.0.0.1:6379: skipping the Redis-counters target", file=sys.stderr)
        return None
    return "redis://127.0.0.1:6379/0"


def run(args: argparse.Namespace) -> int:
    seconds = 3.0 if args.quick else args.seconds
    cpus = os.cpu_count() or 1
    server_cpu, load_cpu = ("0", "1") if cpus >= 2 else (None, None)
    upstream, upstream_url, kind = start_upstream(load_cpu)
    starters: dict[str, Callable[[], Target]] = {
        "direct": lambda: Target(f"upstream direct ({kind.split()[0]})",
                                 upstream_url + "/v1/chat/completions", None, None, None),
        "floor-httpx": lambda: start_floor(upstream_url, cpu=server_cpu, client="httpx"),
        "floor-aiohttp": lambda: start_floor(upstream_url, cpu=server_cpu, client="aiohttp"),
        "floor-h1": lambda: start_floor(upstream_url, cpu=server_cpu, client="h1"),
        "floor-granian": lambda: start_floor(upstream_url, cpu=server_cpu, server="granian",
                                             interface="rsgi", client="aiohttp"),
        # the same floor with keystead's own upstream client, and with pyreqwest (transport.py)
        "floor-granian-h1": lambda: start_floor(upstream_url, cpu=server_cpu, server="granian",
                                                interface="rsgi", client="h1"),
        "floor-granian-pyreqwest": lambda: start_floor(upstream_url, cpu=server_cpu,
                                                       server="granian", interface="rsgi",
                                                       client="pyreqwest"),
        "floor-granian-asgi": lambda: start_floor(upstream_url, cpu=server_cpu,
                                                  server="granian", interface="asgi",
                                                  client="aiohttp"),
        "keystead": lambda: start_keystead(upstream_url, cpu=server_cpu),
        "keystead-route": lambda: start_keystead(upstream_url, cpu=server_cpu,
                                                 name="keystead (route, 2 deployments)",
                                                 routes="route"),
        "keystead-cache": lambda: start_keystead(upstream_url, cpu=server_cpu,
                                                 name="keystead (route, cache hits)",
                                                 routes="cache"),
        "keystead-nometrics": lambda: start_keystead(upstream_url, cpu=server_cpu,
                                                     name="keystead (metrics off)",
                                                     signals=SIGNALS["nometrics"]),
        "keystead-traced": lambda: start_keystead(upstream_url, cpu=server_cpu,
                                                  name="keystead (tracing on, 100 %)",
                                                  signals=SIGNALS["traced"]),
        "keystead-traced10": lambda: start_keystead(upstream_url, cpu=server_cpu,
                                                    name="keystead (tracing on, 10 %)",
                                                    signals=SIGNALS["traced10"]),
    }
    redis_url = _redis_url()
    if redis_url:
        starters["keystead-redis"] = lambda: start_keystead(
            upstream_url, cpu=server_cpu, name="keystead (redis counters)", redis_url=redis_url)
    _add_optional_targets(starters, upstream_url, server_cpu)
    chosen = args.only.split(",") if args.only else [s for s in starters if s not in OPT_IN]
    unknown = [name for name in chosen if name not in starters]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}; known: {', '.join(starters)}",
              file=sys.stderr)
        upstream.stop()
        return 2
    rows = []
    try:
        for name in chosen:
            target = starters[name]()
            try:
                rows.append(measure(target, seconds=seconds, cpu=load_cpu))
            finally:
                if target.proc is not None:
                    target.proc.stop()
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
        stream_rows = [] if args.no_stream else _streams(upstream_url, seconds, server_cpu,
                                                         load_cpu)
    finally:
        upstream.stop()
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": cpus, "python": platform.python_version(),
                    "platform": platform.platform()},
        "upstream": kind, "seconds": seconds,
        "server_cpu": server_cpu, "load_cpu": load_cpu,
        "rows": rows, "ratios": _ratios(rows), "stream": stream_rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    print(table(rows))
    print()
    for name, value in report["ratios"].items():  # type: ignore[attr-defined]
        print(f"{name}: {value}")
    print(f"(upstream: {kind}; server on CPU {server_cpu}, wrk on CPU {load_cpu})")
    if stream_rows:
        print()
        print(stream_table(stream_rows))
    return 0


STREAM_COLUMNS = ("target", "connections", "streams_per_s", "events_per_s", "ttfb_p50_ms",
                  "ttfb_p99_ms", "errors", "client_cpu_pct")


def stream_table(rows: list[dict[str, object]]) -> str:
    lines = ["| " + " | ".join(STREAM_COLUMNS) + " |", "|" + "---|" * len(STREAM_COLUMNS)]
    lines += ["| " + " | ".join(str(row.get(c, "-")) for c in STREAM_COLUMNS) + " |"
              for row in rows]
    return "\n".join(lines)


def _streams(upstream_url: str, seconds: float, server_cpu: str | None,
             load_cpu: str | None) -> list[dict[str, object]]:
    """Time to first byte and events per second, through keystead and direct."""
    from bench.stream import measure_stream, start_keystead_stream_target

    rows: list[dict[str, object]] = []
    target = start_keystead_stream_target(upstream_url, server_cpu)
    try:
        for name, url, key in (("upstream direct", upstream_url + "/stream/v1/chat/completions",
                                None), ("keystead", target.url, target.key)):
            for connections in (1, 32):
                rows.append({"target": name, **measure_stream(
                    url, key, seconds=seconds, connections=connections, cpu=load_cpu)})
    finally:
        if target.proc is not None:
            target.proc.stop()
    return rows


def _add_optional_targets(starters: dict[str, Callable[[], Target]], upstream_url: str,
                          server_cpu: str | None) -> None:
    """The peers, each installed by the benchmark on first use into bench/.cache."""
    from bench.litellm_target import start_litellm
    from bench.portkey_target import start_portkey

    starters["litellm"] = lambda: start_litellm(upstream_url, cpu=server_cpu)
    starters["portkey"] = lambda: start_portkey(upstream_url, cpu=server_cpu)


def soak(args: argparse.Namespace) -> int:
    """Keystead under steady load for --minutes; RSS sampled every 10 s must stay flat."""
    cpus = os.cpu_count() or 1
    server_cpu, load_cpu = ("0", "1") if cpus >= 2 else (None, None)
    upstream, upstream_url, _ = start_upstream(load_cpu)
    target = start_keystead(upstream_url, cpu=server_cpu)
    samples: list[dict[str, float]] = []
    total = 0
    started = time.time()
    try:
        assert target.proc is not None
        proc: Proc = target.proc
        while time.time() - started < args.minutes * 60:
            result = run_wrk(target.url, connections=32, seconds=10, key=target.key,
                             cpu=load_cpu)
            total += result.requests
            samples.append({"t_s": round(time.time() - started), "rss_mb": proc.rss_mb(),
                            "requests": total, "rps": result.rps})
            print(json.dumps(samples[-1]), file=sys.stderr)
    finally:
        if target.proc is not None:
            target.proc.stop()
        upstream.stop()
    warm = [s["rss_mb"] for s in samples if s["t_s"] >= 60] or [s["rss_mb"] for s in samples]
    growth = round(max(warm) - min(warm), 1)
    report = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "minutes": args.minutes, "requests": total, "samples": samples,
              "rss_growth_after_warmup_mb": growth}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(report, indent=2))
    print(f"{total} requests in {args.minutes} min; RSS after warm-up between "
          f"{min(warm)} and {max(warm)} MB (growth {growth} MB)")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["cli"]:  # its own options; needs no wrk
        from bench.cli import main as cli_main

        return cli_main(sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("run", "soak"), default="run")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--quick", action="store_true", help="3 s per measurement")
    parser.add_argument("--only", help="comma-separated targets: direct, floor-httpx, "
                                       "floor-aiohttp, floor-granian, floor-granian-asgi, "
                                       "floor-h1, floor-granian-h1, floor-granian-pyreqwest, "
                                       "keystead, keystead-route, keystead-cache, "
                                       "keystead-nometrics, keystead-traced, keystead-traced10, "
                                       "keystead-redis, litellm, portkey (all but "
                                       "the last four floors when omitted)")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    parser.add_argument("--no-stream", action="store_true", help="skip the streaming figures")
    args = parser.parse_args()
    if not wrk_available():
        print("wrk is missing: apt-get install wrk (Debian) and run again", file=sys.stderr)
        return 2
    return soak(args) if args.mode == "soak" else run(args)


if __name__ == "__main__":
    sys.exit(main())
