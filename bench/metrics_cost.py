"""What metrics add to one request: `Metrics.observe` (and `started`), in microseconds.

Realistic labels: 50 keys in 5 teams and 3 environments, 4 models on 2 providers, 3 routes,
mostly 200s with some 429s and 5xx; every request has tokens, a cost and a latency, a third
are streams (a time to first byte). Measured in one process (the default) and in
multiprocess mode (`--workers N`, the counters in files), each in a fresh interpreter because
prometheus-client picks its mode at import.

    python -m bench.metrics_cost [--requests 200000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import timeit
from decimal import Decimal
from types import SimpleNamespace
from typing import Any


def _records(count: int) -> list[Any]:
    from keystead.state.records import UsageRecord

    models = [("gpt-4o-mini", "openai"), ("gpt-4o", "openai"),
              ("claude-sonnet-4", "anthropic"), ("claude-haiku-4", "anthropic")]
    out = []
    for i in range(count):
        model, provider = models[i % 4]
        status = 429 if i % 50 == 0 else 502 if i % 97 == 0 else 200
        out.append(UsageRecord(
            request_id=f"r{i}", ts=0.0, endpoint="chat.completions", status=status,
            key_id=f"key{i % 50:04d}", key_name=f"prod-app-{i % 50}", team=f"team{i % 5}",
            env=("prod", "staging", "dev")[i % 3], route=("support", "search", None)[i % 3],
            model_requested=model, model_served=model, provider=provider,
            prompt_tokens=120 + i % 7, completion_tokens=40 + i % 11,
            cost_usd=Decimal("0.000123"), latency_ms=350.0 + i % 100,
            ttft_ms=120.0 if i % 3 == 0 else None, stream=i % 3 == 0))
    return out


def _live() -> Any:
    provider = SimpleNamespace(listed_models=("gpt-4o-mini", "gpt-4o", "claude-sonnet-4",
                                              "claude-haiku-4"))
    route = SimpleNamespace(all_deployments=lambda: [])
    return SimpleNamespace(providers=SimpleNamespace(providers={"p": provider}),
                           routes=SimpleNamespace(routes={"support": route, "search": route}))


def measure(requests: int) -> float:
    """Microseconds per request (started + observe + its share of a flush), in this
    interpreter's mode."""
    from prometheus_client import CollectorRegistry

    from keystead.metrics.families import RequestFamilies
    from keystead.metrics.recorder import Recorder

    multi = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    families = RequestFamilies(None if multi else CollectorRegistry())
    live = _live()
    recorder = Recorder(families, 100, lambda: live)
    records = _records(1000)
    ctx = SimpleNamespace(attempt_log=None, refused_scope=None, guard=None)
    for record in records:  # the label children exist, as in a running gateway
        recorder.started()
        recorder.observe(record, ctx)  # type: ignore[arg-type]
    started, observe = recorder.started, recorder.observe
    rounds = max(1, requests // len(records))

    def run() -> None:
        for record in records:
            started()
            observe(record, ctx)  # type: ignore[arg-type]
        recorder.flush()  # into prometheus-client: every 1,000 requests here, 1 s when served

    best = min(timeit.repeat(run, number=rounds, repeat=5))
    return best / (rounds * len(records)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(f"{measure(args.requests):.2f}")
        return
    for mode in ("single process", "multiprocess (--workers N)"):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with tempfile.TemporaryDirectory() as directory:
            if mode.startswith("multi"):
                env["PROMETHEUS_MULTIPROC_DIR"] = directory
            out = subprocess.run([sys.executable, "-m", "bench.metrics_cost", "--child",
                                  "--requests", str(args.requests)], env=env, check=True,
                                 capture_output=True, text=True).stdout.strip()
        print(f"{mode:28s} {out} us per request (started + observe)")


if __name__ == "__main__":
    main()
