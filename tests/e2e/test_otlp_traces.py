"""Traces from a real `keystead serve` to an OTLP/HTTP receiver the test runs (the real
protobuf, decoded), with the official openai SDK as the client sending its own traceparent,
and an upstream that records the traceparent it gets. A collector that hangs or is down never
slows a request or holds the shutdown."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from e2e.harness import free_port, http, prepare_config, read_env_file, start_server, stop
from e2e.otlp_receiver import Collector

pytestmark = pytest.mark.e2e

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SERVER, CLIENT = 2, 3  # the protobuf's SpanKind values
ERROR = 2  # Status.STATUS_CODE_ERROR


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector().start()
    try:
        yield running
    finally:
        running.stop()


def _gateway(directory: Path, upstream: str, tracing: dict[str, Any],
             env: dict[str, str] | None = None) -> tuple[Any, str, str]:
    """A gateway with one openai-compatible provider at `upstream` and `tracing`; returns
    (process, base URL, a key)."""
    config = prepare_config(directory, overrides={
        "providers": {"up": {"type": "openai-compatible", "base_url": upstream,
                             "models": ["gpt-4o-mini"]}},
        "tracing": tracing})
    proc, base_url = start_server(config, directory / "server.log", env=env)
    admin = read_env_file(directory / ".env")["KEYSTEAD_ADMIN_TOKEN"]
    status, _, body = http("POST", base_url + "/admin/keys", body={"name": "dev-trace-e2e"},
                           headers={"authorization": f"Bearer {admin}"})
    assert status == 201, body
    return proc, base_url, str(json.loads(body)["key"])


def _sdk(base_url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=30)


def _ask(sdk: openai.OpenAI, stream: bool, parent: str) -> None:
    headers = {"traceparent": f"00-{CLIENT_TRACE}-{parent}-01"}
    messages: Any = [{"role": "user", "content": "the secret plan is swordfish"}]
    if stream:
        chunks = list(sdk.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, max_tokens=20,
            extra_headers=headers))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) \
            == "Hi there"
    else:
        answer = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                             max_tokens=20, extra_headers=headers)
        assert answer.choices[0].message.content == "Hi there"


def test_spans_reach_the_collector_with_genai_attributes_and_the_clients_trace(
        tmp_path: Path, collector: Collector) -> None:
    proc, base_url, key = _gateway(
        tmp_path, collector.upstream_url,
        {"enabled": True, "endpoint": collector.traces_url, "service_name": "gw-e2e",
         "headers": {"x-collector-key": "${OTLP_COLLECTOR_KEY}"}, "flush_interval_s": 0.1},
        env={"OTLP_COLLECTOR_KEY": "collector-secret-123"})
    try:
        sdk = _sdk(base_url, key)
        _ask(sdk, False, "00f067aa0ba902b7")
        _ask(sdk, True, "00f067aa0ba902b8")
        spans = collector.wait_for(4)
    finally:
        code = stop(proc)
    assert code == 0
    assert all(s.service == "gw-e2e" for s in spans)
    assert all(s.trace_id == CLIENT_TRACE for s in spans)
    assert collector.export_headers[0]["x-collector-key"] == "collector-secret-123"
    servers = {s.parent_span_id: s for s in spans if s.kind == SERVER}
    attempts = {s.parent_span_id: s for s in spans if s.kind == CLIENT}
    assert set(servers) == {"00f067aa0ba902b7", "00f067aa0ba902b8"}
    whole, streamed = servers["00f067aa0ba902b7"], servers["00f067aa0ba902b8"]
    for server, reason in ((whole, "length"), (streamed, "stop")):
        a = server.attributes
        assert server.name == "chat gpt-4o-mini"
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "openai-compatible"
        assert a["gen_ai.request.model"] == "gpt-4o-mini"
        assert a["gen_ai.response.model"] == "gpt-4o-mini-2024"
        assert a["gen_ai.request.max_tokens"] == 20
        assert a["gen_ai.usage.input_tokens"] == 9 and a["gen_ai.usage.output_tokens"] == 2
        assert a["gen_ai.response.finish_reasons"] == (reason,)
        assert a["gen_ai.response.id"] == "chatcmpl-e2e-1"
        assert a["http.response.status_code"] == 200
        assert a["keystead.key.public_id"] == key[4:12]
        attempt = attempts[server.span_id]
        assert attempt.name == "chat gpt-4o-mini"
        assert attempt.attributes["keystead.attempt.number"] == 1
        assert attempt.attributes["server.address"] == "127.0.0.1"
        # The upstream got the attempt span's own traceparent, in the client's trace.
        assert f"00-{CLIENT_TRACE}-{attempt.span_id}-01" in collector.upstream_traceparents
    assert streamed.attributes["gen_ai.request.stream"] is True
    for span in spans:
        text = repr(span.attributes)
        assert "swordfish" not in text and key not in text and "collector-secret" not in text


def test_a_collector_that_hangs_or_is_down_never_slows_requests_or_shutdown(
        tmp_path: Path, collector: Collector) -> None:
    collector.mode = "hang"
    hanging = {"enabled": True, "endpoint": collector.traces_url, "timeout_s": 1,
               "flush_interval_s": 0.05, "batch_size": 1}
    down = {**hanging, "endpoint": f"http://127.0.0.1:{free_port()}/v1/traces"}
    for name, tracing in (("hang", hanging), ("down", down)):
        directory = tmp_path / name
        directory.mkdir()
        proc, base_url, key = _gateway(directory, collector.upstream_url, tracing)
        try:
            sdk = _sdk(base_url, key)
            started = time.monotonic()
            for i in range(10):
                _ask(sdk, bool(i % 2), f"00f067aa0ba9{i:04x}")
            # Ten requests while every export waits for its 1 s timeout: none waited on one.
            assert time.monotonic() - started < 5, name
        finally:
            stopping = time.monotonic()
            code = stop(proc)
        assert code == 0, name
        # The ledger flush, the store... and the traces' flush, bounded by timeout_s (1 s).
        assert time.monotonic() - stopping < 6, name
    assert collector.spans == []
