"""Spans of real requests through the in-process app, caught by the SDK's in-memory exporter:
the GenAI attributes, the parenting (client -> request -> attempts), the traceparent that
goes upstream, and what never becomes an attribute."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from keystead.config.tracing import TracingConfig
from keystead.tracing.setup import Tracing
from keystead.tracing.upstream import TRACE_HEADERS
from support import AppClient, make_loaded, running_app

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"
SECRET_PROMPT = "my card is 4111 1111 1111 1111 and the launch code is swordfish"


def _run(tmp_path: Path, test: Callable[[AppClient, InMemorySpanExporter], Awaitable[None]],
         raw: dict[str, Any] | None = None, ratio: float = 1.0) -> None:
    exporter = InMemorySpanExporter()

    async def main() -> None:
        async with running_app(make_loaded(tmp_path, raw=raw)) as client:
            client.runtime.trace_with(Tracing(TracingConfig(sample_ratio=ratio),
                                              exporter=exporter))
            await asyncio.wait_for(test(client, exporter), 60)

    asyncio.run(main())


def _chat(stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "stream": stream, "max_tokens": 50,
            "messages": [{"role": "user", "content": SECRET_PROMPT}], **extra}


def _by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans if span.kind is kind]


def _no_content(spans: tuple[ReadableSpan, ...], *secrets: str) -> None:
    for span in spans:
        text = repr(dict(span.attributes or {})) + span.name
        # The card number with its spaces: "4111" alone turns up in random hex ids (trace and
        # response ids), about once in a few thousand runs.
        for secret in (SECRET_PROMPT, "swordfish", "4111 1111", *secrets):
            assert secret not in text, (span.name, secret)


def test_chat_request_span_has_genai_attributes_and_client_parent(tmp_path: Path) -> None:
    async def test(client: AppClient, exporter: InMemorySpanExporter) -> None:
        key = await client.create_key("dev-trace-app", team=None)
        reply = await client.request("POST", "/v1/chat/completions", json_body=_chat(),
                                     key=key, headers={"traceparent": TRACEPARENT,
                                                       "tracestate": "vendor=abc"})
        assert reply.status == 200, reply.body
        spans = exporter.get_finished_spans()
        [server] = _by_kind(spans, SpanKind.SERVER)
        [attempt] = _by_kind(spans, SpanKind.CLIENT)
        assert server.name == "chat gpt-4o-mini"
        assert format(server.context.trace_id, "032x") == CLIENT_TRACE
        assert server.parent is not None and format(server.parent.span_id, "016x") \
            == CLIENT_PARENT
        assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
        attrs = dict(server.attributes or {})
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
        assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "mock"
        assert attrs["gen_ai.request.max_tokens"] == 50
        assert attrs["gen_ai.response.model"]
        assert attrs["gen_ai.usage.input_tokens"] > 0
        assert attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
        assert str(attrs["gen_ai.response.id"]).startswith("chatcmpl")
        assert attrs["http.response.status_code"] == 200
        assert attrs["keystead.request_id"] == reply.headers["x-request-id"]
        assert attrs["keystead.key.public_id"] == key[4:12]
        assert attrs["keystead.env"] == "dev"
        assert attrs["keystead.attempts"] == 1
        assert attrs["keystead.cost_usd"] >= 0
        assert server.status.status_code is StatusCode.UNSET
        a = dict(attempt.attributes or {})
        assert attempt.name == "chat gpt-4o-mini"
        assert a["keystead.attempt.number"] == 1 and a["keystead.attempt.outcome"] == "ok"
        assert a["keystead.deployment"] and a["http.response.status_code"] == 200
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
        _no_content(spans, key)

    _run(tmp_path, test)


def test_stream_span_reads_finish_reason_and_time_to_first_chunk(tmp_path: Path) -> None:
    async def test(client: AppClient, exporter: InMemorySpanExporter) -> None:
        key = await client.create_key("dev-trace-app")
        reply = await client.request("POST", "/v1/chat/completions", json_body=_chat(True),
                                     key=key)
        assert reply.status == 200, reply.body
        spans = exporter.get_finished_spans()
        [server] = _by_kind(spans, SpanKind.SERVER)
        attrs = dict(server.attributes or {})
        assert server.parent is None  # no traceparent: a trace of its own
        assert attrs["gen_ai.request.stream"] is True
        assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
        assert str(attrs["gen_ai.response.id"]).startswith("chatcmpl")
        assert attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["gen_ai.response.time_to_first_chunk"] > 0
        _no_content(spans, key)

    _run(tmp_path, test)


def test_upstream_gets_the_attempt_spans_traceparent(tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def test(client: AppClient, exporter: InMemorySpanExporter) -> None:
        provider = client.runtime.providers.providers.get("mock")
        assert provider is not None
        transport = provider.transport
        original = transport.send

        async def spy(method: str, url: str, headers: dict[str, str], body: bytes | None,
                      **kwargs: Any) -> Any:
            seen.append(headers.get("traceparent"))
            return await original(method, url, headers, body, **kwargs)

        transport.send = spy  # type: ignore[method-assign]
        key = await client.create_key("dev-trace-app")
        reply = await client.request("POST", "/v1/chat/completions", json_body=_chat(),
                                     key=key, headers={"traceparent": TRACEPARENT})
        assert reply.status == 200
        [attempt] = _by_kind(exporter.get_finished_spans(), SpanKind.CLIENT)
        context = attempt.context
        assert seen == [f"00-{CLIENT_TRACE}-{context.span_id:016x}-01"]
        assert TRACE_HEADERS.get() is None  # reset after the try

    _run(tmp_path, test)


def test_retries_make_one_attempt_span_each_and_5xx_is_an_error(tmp_path: Path) -> None:
    raw = {"routes": {"support": {"deployments": [{"provider": "mock",
                                                   "model": "gpt-4o-mini"}],
                                  "retry": {"attempts": 3, "base_ms": 1, "cap_ms": 2}}}}

    async def test(client: AppClient, exporter: InMemorySpanExporter) -> None:
        key = await client.create_key("dev-trace-app")
        body = _chat(model="support")
        body["messages"] = [{"role": "user", "content": "[[mock:status=503]]"}]
        reply = await client.request("POST", "/v1/chat/completions", json_body=body, key=key)
        assert reply.status == 503, reply.body
        spans = exporter.get_finished_spans()
        [server] = _by_kind(spans, SpanKind.SERVER)
        attempts = sorted(_by_kind(spans, SpanKind.CLIENT),
                          key=lambda s: dict(s.attributes or {})["keystead.attempt.number"])
        assert [dict(a.attributes or {})["keystead.attempt.number"] for a in attempts] \
            == [1, 2, 3]
        for attempt in attempts:
            a = dict(attempt.attributes or {})
            assert a["http.response.status_code"] == 503
            assert a["error.type"] == a["keystead.attempt.outcome"] == "http_503"
            assert attempt.status.status_code is StatusCode.ERROR
            assert attempt.parent is not None \
                and attempt.parent.span_id == server.context.span_id
        assert dict(attempts[1].attributes or {})["keystead.attempt.backoff_s"] > 0
        attrs = dict(server.attributes or {})
        assert server.name == "chat support"
        assert attrs["keystead.route"] == "support" and attrs["keystead.attempts"] == 3
        assert attrs["error.type"] == "upstream_http_503"
        assert server.status.status_code is StatusCode.ERROR

    _run(tmp_path, test, raw)


def test_refusal_is_recorded_without_genai_provider_and_4xx_is_not_an_error(
        tmp_path: Path) -> None:
    async def test(client: AppClient, exporter: InMemorySpanExporter) -> None:
        reply = await client.request("POST", "/v1/chat/completions", json_body=_chat(),
                                     key="ksk_notakey")
        assert reply.status == 401
        [server] = exporter.get_finished_spans()
        attrs = dict(server.attributes or {})
        assert attrs["http.response.status_code"] == 401
        assert attrs["error.type"]
        assert "keystead.key.public_id" not in attrs and "gen_ai.provider.name" not in attrs
        assert server.status.status_code is StatusCode.UNSET
        _no_content((server,), "ksk_notakey")

    _run(tmp_path, test)


def test_client_that_is_not_sampled_is_followed(tmp_path: Path) -> None:
    seen: list[str] = []

    async def test(client: AppClient, exporter: InMemorySpanExporter) -> None:
        provider = client.runtime.providers.providers.get("mock")
        assert provider is not None
        original = provider.transport.send

        async def spy(method: str, url: str, headers: dict[str, str], body: bytes | None,
                      **kwargs: Any) -> Any:
            seen.append(headers["traceparent"])
            return await original(method, url, headers, body, **kwargs)

        provider.transport.send = spy  # type: ignore[method-assign]
        key = await client.create_key("dev-trace-app")
        reply = await client.request(
            "POST", "/v1/chat/completions", json_body=_chat(), key=key,
            headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-00"})
        assert reply.status == 200
        assert exporter.get_finished_spans() == ()
        # Not recorded, still propagated: the provider's spans join the client's trace.
        assert seen[0].startswith(f"00-{CLIENT_TRACE}-") and seen[0].endswith("-00")

    _run(tmp_path, test)


def test_ratio_zero_records_nothing_and_hostile_traceparent_starts_a_new_trace(
        tmp_path: Path) -> None:
    async def test(client: AppClient, exporter: InMemorySpanExporter) -> None:
        key = await client.create_key("dev-trace-app")
        for bad in ("00-" + "0" * 32 + "-" + "1" * 16 + "-01", "zz" * 2000, "00-é-x-01",
                    f"ff-{CLIENT_TRACE}-{CLIENT_PARENT}-01"):
            reply = await client.request("POST", "/v1/chat/completions", json_body=_chat(),
                                         key=key, headers={"traceparent": bad})
            assert reply.status == 200
        assert exporter.get_finished_spans() == ()  # ratio 0, and no valid sampled parent

    _run(tmp_path, test, ratio=0.0)


def test_a_clients_trace_headers_never_reach_the_log(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    # OpenTelemetry's propagator logs a warning quoting a tracestate member it refuses: a
    # client could write into the gateway's log (a token, a fake log line) on every request.
    marker = "sk-live-CLIENT-TEXT-0123456789"
    valid = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"
    cases = [{"traceparent": valid, "tracestate": f"vendor=abc,{marker} <script>"},
             {"traceparent": valid, "tracestate": "a=1,a=2"},
             {"traceparent": valid, "tracestate": ",".join(f"k{i}=v" for i in range(40))},
             {"traceparent": valid, "tracestate": f"k={marker}" + ",x=y" * 3000},
             {"traceparent": valid + "-" + marker * 20}]

    async def test(client: AppClient, exporter: InMemorySpanExporter) -> None:
        key = await client.create_key("dev-trace-app")
        for headers in cases:
            exporter.clear()
            reply = await client.request("POST", "/v1/chat/completions", json_body=_chat(),
                                         key=key, headers=headers)
            assert reply.status == 200
            [server] = _by_kind(exporter.get_finished_spans(), SpanKind.SERVER)
            if len(headers["traceparent"]) == len(valid):  # a bad tracestate loses only itself
                assert format(server.context.trace_id, "032x") == CLIENT_TRACE
                assert marker not in str(server.context.trace_state)

    with caplog.at_level(logging.DEBUG):
        _run(tmp_path, test)
    warnings = [r for r in caplog.records if r.name.startswith("opentelemetry")]
    assert warnings == [], [r.getMessage()[:120] for r in warnings]
    assert marker not in caplog.text
