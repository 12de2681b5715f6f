"""What one request log line costs: logging's StreamHandler (one LogRecord, one locked,
line-buffered write per line) against keystead's LineSink (logs.py: held until the end of the
loop's tick, whole-line batches).

    python -m bench.log_cost [--per-tick 8] [--lines 200000] 2>&1 >/dev/null | cat

The lines go to stdout, which should be a pipe with a reader (`| cat > /dev/null`) as under a
service manager; the figures go to stderr. Each variant runs inside a uvloop loop that yields
after `--per-tick` lines, as a busy server settles several requests per loop iteration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

import orjson

from keystead import logs

LINE = orjson.dumps({
    "ts": "2025-01-01T00:00:00.000Z", "level": "info", "event": "request",
    "request_id": "req_0123456789abcdef01234567", "endpoint": "chat", "status": 200,
    "error_code": None, "key_id": "key_0123456789ab", "key_name": "dev-bench-load",
    "team": "bench", "env": "dev", "feature": None, "model": "gpt-4o-mini",
    "model_served": "gpt-4o-mini", "provider": "bench", "stream": False, "prompt_tokens": 12,
    "completion_tokens": 5, "cached_tokens": 0, "cost_usd": "0.0000048", "cost_known": True,
    "usage_estimated": False, "latency_ms": 0.913, "ttft_ms": 0.9, "client_ip": "127.0.0.1",
    "token_id": None, "user": None, "guard": None, "route": None,
    "deployment": "bench/gpt-4o-mini", "attempts": 1, "fallback": False, "cache": None,
    "schema_valid": None, "degraded": False})


async def _run(log: object, lines: int, per_tick: int) -> float:
    assert callable(log)
    started = time.perf_counter()
    for done in range(0, lines, per_tick):
        for _ in range(min(per_tick, lines - done)):
            log(LINE)
        await asyncio.sleep(0)
    await asyncio.sleep(0)  # the last tick's flush
    return (time.perf_counter() - started) / lines * 1e6


def _stream_handler() -> None:
    """The logging set-up before LineSink: a StreamHandler with the JSON formatter."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logs._JSONFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_cost", description=__doc__)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--per-tick", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import uvloop

    results: dict[str, list[float]] = {"logging.StreamHandler": [], "LineSink + log_request": []}
    for _ in range(args.rounds):  # alternated, best of each
        _stream_handler()
        results["logging.StreamHandler"].append(uvloop.run(
            _run(logs.request_logger.info, args.lines, args.per_tick)))
        logs.configure_logging("info", sys.stdout)
        results["LineSink + log_request"].append(uvloop.run(
            _run(logs.log_request, args.lines, args.per_tick)))
    for name, figures in results.items():
        print(f"{name:26} {min(figures):6.2f} us per line (best of {args.rounds}, "
              f"{args.per_tick} lines per tick, {len(LINE) + 1} bytes each)", file=sys.stderr)


if __name__ == "__main__":
    main()
