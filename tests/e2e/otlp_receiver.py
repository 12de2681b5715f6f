"""An OTLP/HTTP trace receiver and a small OpenAI-compatible upstream, in one aiohttp server
on a thread of the test process: what a collector and a provider would see from a real
`keystead serve`.

The receiver decodes each POST /v1/traces body with the protobuf types of opentelemetry-proto
and answers with the protobuf response, as a collector does; `mode` makes it hang instead.
The upstream answers chat completions (whole or streamed) and records the `traceparent` of
every request it gets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from e2e.harness import free_port


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int
    service: str


@dataclass
class Collector:
    port: int = 0
    mode: str = "ok"  # "hang": accept the request and never answer
    spans: list[Span] = field(default_factory=list)
    exports: int = 0
    export_headers: list[dict[str, str]] = field(default_factory=list)
    upstream_traceparents: list[str | None] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def traces_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> Collector:
        self.port = free_port()
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/v1/traces", self._traces)
            app.router.add_post("/v1/chat/completions", self._chat)
            self._runner = web.AppRunner(app)
            loop.run_until_complete(self._runner.setup())
            loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def wait_for(self, count: int, timeout: float = 20) -> list[Span]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.spans) >= count:
                    return list(self.spans)
            time.sleep(0.05)
        raise AssertionError(f"the collector got {len(self.spans)} spans, expected {count}")

    async def _traces(self, request: web.Request) -> web.Response:
        if self.mode == "hang":
            await asyncio.sleep(3600)
        body = await request.read()
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        with self._lock:
            self.exports += 1
            self.export_headers.append(dict(request.headers))
            for resource_spans in export.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(Span(
                            span.name, span.kind, span.trace_id.hex(), span.span_id.hex(),
                            span.parent_span_id.hex(),
                            {a.key: _value(a.value) for a in span.attributes},
                            span.status.code, service))
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.upstream_traceparents.append(request.headers.get("traceparent"))
        asked = await request.json()
        usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        base = {"id": "chatcmpl-e2e-1", "created": 1, "model": asked["model"] + "-2024"}
        if not asked.get("stream"):
            return web.json_response({**base, "object": "chat.completion", "choices": [
                {"index": 0, "finish_reason": "length",
                 "message": {"role": "assistant", "content": "Hi there"}}], "usage": usage})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        chunk = {**base, "object": "chat.completion.chunk"}
        for event in (
                {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                             "content": "Hi"}}]},
                {**chunk, "choices": [{"index": 0, "delta": {"content": " there"}}]},
                {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {**chunk, "choices": [], "usage": usage}):
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None
