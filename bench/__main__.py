"""`python -m bench`: keystead against the fake upstream called directly, on one machine.

The server under test is pinned to CPU 0; wrk and the fake upstream share CPU 1. Each target is
warmed up, then loaded with 32 connections (throughput) and 1 connection (latency).
Results: a table on stdout, JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench.load import run_wrk, wrk_available
from bench.targets import Target, start_keystead
from bench.upstream import start_upstream

RESULTS = Path(__file__).parent / "results"


def measure(target: Target, *, seconds: float, cpu: str | None) -> dict[str, object]:
    run_wrk(target.url, connections=32, seconds=min(2.0, seconds), key=target.key, cpu=cpu)
    busy = run_wrk(target.url, connections=32, seconds=seconds, key=target.key, cpu=cpu)
    single = run_wrk(target.url, connections=1, seconds=seconds, key=target.key, cpu=cpu)
    return {
        "target": target.name,
        "rps_32": busy.rps, "p50_ms_32": busy.p50_ms, "p99_ms_32": busy.p99_ms,
        "rps_1": single.rps, "p50_ms_1": single.p50_ms, "p99_ms_1": single.p99_ms,
        "non_2xx": busy.non_2xx + single.non_2xx,
        "socket_errors": busy.socket_errors + single.socket_errors,
        "rss_mb": target.proc.rss_mb() if target.proc else None,
        "cold_start_s": target.cold_start_s,
        "load": {"32": asdict(busy), "1": asdict(single)},
    }


def table(rows: list[dict[str, object]]) -> str:
    head = ("target", "rps_32", "p50_ms_32", "p99_ms_32", "rps_1", "p50_ms_1", "p99_ms_1",
            "non_2xx", "rss_mb", "cold_start_s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join("-" if row.get(h) is None else str(row.get(h))
                                       for h in head) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--quick", action="store_true", help="3 s per measurement")
    args = parser.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    if not wrk_available():
        print("wrk is missing: apt-get install wrk (Debian) and run again", file=sys.stderr)
        return 2
    cpus = os.cpu_count() or 1
    server_cpu, load_cpu = ("0", "1") if cpus >= 2 else (None, None)
    upstream, upstream_url, kind = start_upstream(load_cpu)
    rows = []
    procs = [upstream]
    try:
        direct = Target(f"upstream direct ({kind.split()[0]})",
                        upstream_url + "/v1/chat/completions", None, None, None)
        rows.append(measure(direct, seconds=seconds, cpu=load_cpu))
        keystead = start_keystead(upstream_url, cpu=server_cpu)
        procs.append(keystead.proc)  # type: ignore[arg-type]
        rows.append(measure(keystead, seconds=seconds, cpu=load_cpu))
    finally:
        for proc in reversed(procs):
            proc.stop()
    added = round(float(rows[1]["p50_ms_1"]) - float(rows[0]["p50_ms_1"]), 3)  # type: ignore[arg-type]
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": cpus, "python": platform.python_version(),
                    "platform": platform.platform()},
        "upstream": kind, "seconds": seconds,
        "server_cpu": server_cpu, "load_cpu": load_cpu,
        "rows": rows, "added_p50_ms_at_1_connection": added,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    print(table(rows))
    print(f"\nadded median latency at 1 connection: {added} ms "
          f"(upstream: {kind}; server on CPU {server_cpu}, wrk on CPU {load_cpu})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
