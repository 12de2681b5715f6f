"""What one budgeted request costs the counters: admit and settle, in Redis and in process.

A private `redis-server` (free port, no persistence) so that Redis's own per-command time is
this run's alone. A request holds its key's in-flight slot and a budget reservation and is
charged a token rate, as a budgeted key with `tpm` is; then it is settled to its real cost.

    python -m bench.counters_cost [--requests 20000] [--src PATH]

`--src` measures another checkout's keystead (the before figures): the script runs itself
again with that tree first on the path. Prints client-observed microseconds per call, Redis's
own microseconds per script call (INFO commandstats), and the memory one settlement leaves;
then the same requests from 32 concurrent request loops, as a busy gateway makes them: this
process's CPU microseconds per request (admit + settle), and script calls per request (one
per call; gathered calls carry several operations).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis


def _redis_server(port: int, directory: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", directory],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with redis.Redis(port=port, socket_timeout=1) as client:
                client.ping()
            return proc
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _evalsha(client: redis.Redis) -> tuple[int, float]:
    stats: Any = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), float(stats.get("usec", 0))


async def _redis_figures(url: str, requests: int) -> dict[str, float]:
    from keystead.state.counters import Hold, Rate
    from keystead.state.redis_counters import RedisCounters

    counters = RedisCounters(url, "kcost:")
    period = time.time() + 86_400
    await counters.seed("budget", 0, period)
    new_api = "periods" in inspect.signature(counters.settle).parameters
    rate = Rate("tpm", 10**12, 60, 500)
    holds = [Hold("inflight", 2**62, 1), Hold("budget", 10**15, 300_000, period)]
    figures: dict[str, float] = {}
    with redis.Redis.from_url(url) as client:
        for warm in (True, False):
            count = 500 if warm else requests
            calls, usec = _evalsha(client)
            started = time.perf_counter()
            for i in range(count):
                await counters.admit(f"r{warm}{i}", [rate], holds, 30)
            admit_s = time.perf_counter() - started
            calls_a, usec_a = _evalsha(client)
            started = time.perf_counter()
            for i in range(count):
                used = {"inflight": 0, "budget": 120_000}
                adjust = [rate._replace(cost=-300)]
                if new_api:
                    await counters.settle(f"r{warm}{i}", used, adjust, {"budget": period},
                                          once=True)
                else:
                    await counters.settle(f"r{warm}{i}", used, adjust)
            settle_s = time.perf_counter() - started
            calls_s, usec_s = _evalsha(client)
        figures = {
            "admit_us": admit_s / requests * 1e6, "settle_us": settle_s / requests * 1e6,
            "redis_admit_us": (usec_a - usec) / (calls_a - calls),
            "redis_settle_us": (usec_s - usec_a) / (calls_s - calls_a),
            "keys_after": float(client.dbsize()),
        }
        marker = client.keys("kcost:settled:*")
        figures["marker_bytes"] = float(client.memory_usage(marker[0]) or 0) if marker else 0.0
        figures.update(await _concurrent(counters, client, requests, rate, holds, period))
        if new_api:
            calls, usec = _evalsha(client)
            for _ in range(1000):
                await counters.epoch("bench", "", 3.0, 30.0)
            calls_e, usec_e = _evalsha(client)
            figures["redis_epoch_us"] = (usec_e - usec) / (calls_e - calls)
    await counters.close()
    return figures


async def _concurrent(counters: Any, client: redis.Redis, requests: int, rate: Any,
                      holds: list[Any], period: float, loops: int = 32) -> dict[str, float]:
    async def loop(n: int) -> None:
        for i in range(requests // loops):
            request_id = f"c{n}-{i}"
            await counters.admit(request_id, [rate], holds, 30)
            await counters.settle(request_id, {"inflight": 0, "budget": 120_000},
                                  [rate._replace(cost=-300)], {"budget": period}, once=True)

    calls, _ = _evalsha(client)
    started, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop(n) for n in range(loops)))
    cpu, wall = time.process_time() - started, time.perf_counter() - wall
    done = requests // loops * loops
    return {"concurrent32_cpu_us_per_request": cpu / done * 1e6,
            "concurrent32_wall_us_per_request": wall / done * 1e6,
            "concurrent32_script_calls_per_request": (_evalsha(client)[0] - calls) / done}


async def _memory_figures(requests: int) -> dict[str, float]:
    from keystead.config.model import LimitsConfig
    from keystead.pipeline.limits import Limiter
    from keystead.state.memory_counters import MemoryCounters
    from keystead.state.records import KeyRecord, Limits

    async def spend(*_: Any) -> int:
        return 0

    limiter = Limiter(MemoryCounters(), LimitsConfig(), spend, shared=False)
    key = KeyRecord(id="k1", name="prod-bench-api", key_hash="h", env="prod", team=None,
                    limits=Limits(tpm=10**12, budget_usd=Decimal(10**6)))
    scopes = limiter.scopes(key, None)
    best = float("inf")
    # CPU time, the best of five runs after a warm-up: the machine is shared.
    for run in range(6):
        started = time.process_time()
        for i in range(requests):
            ticket = await limiter.admit(f"m{run}-{i}", scopes, 500, Decimal("0.0003"))
            await limiter.settle(ticket, 400, Decimal("0.00012"))
        if run:
            best = min(best, time.process_time() - started)
    return {"memory_admit_settle_cpu_us": best / requests * 1e6}


def measure(requests: int) -> dict[str, float]:
    port = int(os.environ["KEYSTEAD_COST_REDIS_PORT"])
    figures = asyncio.run(_redis_figures(f"redis://127.0.0.1:{port}/0", requests))
    figures.update(asyncio.run(_memory_figures(requests)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        for name, value in measure(args.requests).items():
            print(f"{name} {value:.2f}")
        return
    with tempfile.TemporaryDirectory() as directory:
        with __import__("socket").socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = _redis_server(port, directory)
        try:
            env = {**os.environ, "PYTHONPATH": f"{args.src.resolve()}{os.pathsep}"
                   f"{Path(__file__).resolve().parents[1]}", "KEYSTEAD_COST_REDIS_PORT": str(port)}
            result = subprocess.run([sys.executable, "-m", "bench.counters_cost", "--child",
                                     "--requests", str(args.requests)], env=env, text=True,
                                    capture_output=True, check=True)
        finally:
            server.terminate()
            server.wait()
    print(f"keystead from {args.src.resolve()}, {args.requests} budgeted requests:")
    print(result.stdout, end="")


if __name__ == "__main__":
    main()
