"""What tracing adds to a request, in process (no HTTP, no wrk): the mock provider answers, the
whole data plane runs, and spans are made or not.

    python -m bench.tracing_cost [--requests 3000] [--rounds 3]

Variants, interleaved round by round (the best round of each is printed, in µs per request):
  off          tracing.enabled false (the default): one attribute check per request and one
               context-variable read per upstream request
  unsampled    on, sample_ratio 0 and no client traceparent: a trace context made and
               passed upstream, nothing recorded
  on           on, every request recorded (the client's traceparent is sampled): the spans
               and their attributes (exporter: none)
  on+encode    as `on`, each span also encoded to OTLP protobuf on the request path (an upper
               bound: the real exporter encodes in its background thread)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from keystead.config.load import LoadedConfig, parse_config
from keystead.config.tracing import TracingConfig
from keystead.control.keys import KeyService
from keystead.server.app import create_app
from keystead.tracing.setup import Tracing
from keystead.vault.envelope import MasterKey

BODY = json.dumps({"model": "gpt-4o-mini", "max_tokens": 16,
                   "messages": [{"role": "user", "content": "hello"}]}).encode()


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _Encode(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS


def _loaded(directory: Path) -> LoadedConfig:
    raw = {"database": {"url": f"sqlite:///{directory / 'keystead.db'}"},
           "vault": {"master_key": "${KEYSTEAD_MASTER_KEY}"},
           "providers": {"mock": {"type": "mock", "models": ["gpt-4o-mini"]}},
           "usage": {"flush_interval_s": 0.2}}
    env = {"KEYSTEAD_MASTER_KEY": MasterKey.generate_text()}
    return LoadedConfig(parse_config(raw, env, source="bench"), None, directory)


async def _requests(app: Any, key: str, count: int, traced: bool) -> float:
    """µs per request; `traced`: the client sends a sampled traceparent."""
    headers = [(b"authorization", f"Bearer {key}".encode()),
               (b"content-type", b"application/json")]
    if traced:
        headers.append((b"traceparent",
                        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
             "client": ("127.0.0.1", 5000), "server": ("bench", 80), "headers": headers}
    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    started = time.perf_counter()
    for _ in range(count):
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": BODY, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        await app(scope, receive, send)
        assert status == 200, status
    return (time.perf_counter() - started) / count * 1e6


async def main(requests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(_loaded(Path(tmp)))
        runtime = await app.startup()
        try:
            key = (await KeyService(runtime).create("dev-bench-app")).text
            variants = {
                "off": None,
                "unsampled": Tracing(TracingConfig(sample_ratio=0.0), exporter=_Discard()),
                "on": Tracing(TracingConfig(), exporter=_Discard()),
                "on+encode": Tracing(TracingConfig(), exporter=_Encode()),
            }
            await _requests(app, key, requests // 3, False)  # warm up
            best: dict[str, float] = {}
            for _ in range(rounds):
                for name, tracing in variants.items():
                    runtime.tracing = tracing
                    runtime.router.tracer = tracing.attempts if tracing else None
                    took = await _requests(app, key, requests, name.startswith("on"))
                    best[name] = min(best.get(name, took), took)
            runtime.tracing = None
            runtime.router.tracer = None
        finally:
            await app.shutdown()
    base = best["off"]
    for name, took in best.items():
        print(f"{name:10s} {took:8.1f} µs/request  ({took - base:+.1f} µs against off)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
