"""Does `keystead serve --workers N` scale on cores? (issue 15, item 6)

    python -m bench.cores [--seconds 10] [--rounds 2] [--redis]

A 2-core machine cannot give the server two cores and the load generator its own: whatever the
server gains, it takes from wrk and the fake provider. So three set-ups are measured, each
alternated `--rounds` times, with the same policy as the main benchmark's `keystead` target:

- `1 worker, own core`: the server pinned to CPU 0, wrk and nginx pinned to CPU 1 (the main
  benchmark's set-up: the server's core is its own).
- `1 worker, shared`: the server may run on both CPUs; wrk and nginx too, at the lowest priority
  (nice 19), so the kernel gives the server what it asks first.
- `2 workers, shared`: the same, with `--workers 2` (two processes on one listening socket).

Beside requests per second, each row gives the CPU seconds the server's processes used per
1,000 requests (from /proc, the parent and its workers): a worker count that scales keeps that
figure flat while the throughput rises. Results: a table on stdout, JSON in
bench/results/cores.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.load import run_wrk
from bench.procs import Proc, _children
from bench.targets import start_keystead
from bench.upstream import start_upstream

RESULTS = Path(__file__).parent / "results"
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(proc: Proc) -> float:
    """User + system CPU seconds of a process and its children (uvicorn's workers)."""
    total = 0
    for pid in [proc.popen.pid, *_children(proc.popen.pid)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS


SETUPS = (
    # name, server CPUs, workers, load CPUs, load niceness
    ("1 worker, own core", "0", 1, "1", 0),
    ("1 worker, shared", "0,1", 1, "0,1", 19),
    ("2 workers, shared", "0,1", 2, "0,1", 19),
)


def measure(name: str, server_cpus: str, workers: int, load_cpus: str, nice: int,
            seconds: float, redis_url: str | None) -> dict[str, object]:
    upstream, upstream_url, _ = start_upstream(load_cpus)
    if nice:
        os.setpriority(os.PRIO_PGRP, upstream.popen.pid, nice)  # nginx and its worker
    target = start_keystead(upstream_url, cpu=server_cpus, workers=workers, name=name,
                            redis_url=redis_url)
    try:
        assert target.proc is not None
        run_wrk(target.url, connections=32, seconds=2, key=target.key, cpu=load_cpus,
                nice=nice)  # warm-up: every worker has served, caches are filled
        before = cpu_seconds(target.proc)
        busy = run_wrk(target.url, connections=32, seconds=seconds, key=target.key,
                       cpu=load_cpus, threads=2 if "," in load_cpus else 1, nice=nice)
        used = cpu_seconds(target.proc) - before
        return {"setup": name, "workers": workers, "rps_32": busy.rps, "p50_ms_32": busy.p50_ms,
                "p99_ms_32": busy.p99_ms, "non_2xx": busy.non_2xx,
                "server_cpu_s_per_1k": round(used / max(busy.requests, 1) * 1000, 3),
                "server_cores_busy": round(used / seconds, 2)}
    finally:
        if target.proc is not None:
            target.proc.stop()
        upstream.stop()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cores", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--redis", action="store_true",
                        help="counters in the local Redis (redis://127.0.0.1:6379/0)")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        print("needs 2 CPUs", file=sys.stderr)
        return 2
    redis_url = "redis://127.0.0.1:6379/0" if args.redis else None
    rows = [measure(*setup, seconds=args.seconds, redis_url=redis_url)
            for _ in range(args.rounds) for setup in SETUPS]
    columns = ("setup", "rps_32", "p50_ms_32", "p99_ms_32", "server_cores_busy",
               "server_cpu_s_per_1k", "non_2xx")
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cores.json").write_text(json.dumps({"rows": rows, "redis": bool(redis_url)},
                                                   indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
