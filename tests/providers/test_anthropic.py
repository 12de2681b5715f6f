"""Anthropic behind the OpenAI route: the translation, the mock Anthropic upstream, the adapter.

1. The translator (pure functions): requests, answers, streams split anywhere, errors.
2. The mock speaks Anthropic's real wire format: the official `anthropic` SDK parses its
   messages, streams and errors over real HTTP.
3. End to end: the gateway under uvicorn with a provider of type anthropic pointed at the
   served mock, and the official `openai` SDK as the client.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from e2e.harness import free_port, http, wait_for_rows
from keystead.errors import InvalidField, render
from keystead.mocks.anthropic_upstream import AnthropicMockSettings, create_anthropic_mock_app
from keystead.mocks.openai_upstream import MockSettings, create_mock_app
from keystead.providers.anthropic import AnthropicProvider
from keystead.providers.anthropic_translate import (
    DEFAULT_MAX_TOKENS,
    StreamTranslator,
    chat_to_messages,
    error_to_openai,
    message_to_completion,
)
from keystead.providers.base import Endpoint
from keystead.providers.registry import ProviderSpec, build_provider
from keystead.providers.transport import ASGITransport
from keystead.server.app import create_app
from keystead.usage.prices import PriceBook, TokenUsage
from openapi_schemas import validate
from support import ADMIN_TOKEN, make_loaded

ANTHROPIC_KEY = "sk-ant-test-key-0123456789"
GEMINI_KEY = "gemini-test-key-0123456789"
MODEL = "claude-haiku-4-5"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def translate(**body: Any) -> dict[str, Any]:
    body.setdefault("messages", user("hi"))
    return chat_to_messages(body, MODEL, stream=bool(body.get("stream")))


# --- 1. request translation -----------------------------------------------------------------


def test_a_plain_request_gets_the_required_max_tokens_and_the_upstream_model():
    out = translate(model="alias", messages=user("hello"))
    assert out == {"model": MODEL, "messages": [{"role": "user", "content": "hello"}],
                   "max_tokens": DEFAULT_MAX_TOKENS}


def test_system_and_developer_messages_are_hoisted_in_order():
    french = [{"type": "text", "text": "in French"}]
    out = translate(messages=[{"role": "system", "content": "be brief"},
                              {"role": "user", "content": "hi"},
                              {"role": "developer", "content": french}])
    assert out["system"] == "be brief\n\nin French"
    assert out["messages"] == [{"role": "user", "content": "hi"}]


def test_sampling_options_are_translated():
    out = translate(max_completion_tokens=50, max_tokens=99, temperature=1.7, top_p=0.9,
                    stop="END", user="u-42", stream=True, seed=7, store=False,
                    stream_options={"include_usage": True}, n=1, logprobs=False,
                    presence_penalty=0)
    assert out["max_tokens"] == 50  # max_completion_tokens wins, as on OpenAI
    assert out["temperature"] == 1.0  # OpenAI's 0-2 capped to Anthropic's 0-1
    assert out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "u-42"}
    assert out["stream"] is True
    for dropped in ("seed", "store", "stream_options", "n", "logprobs", "presence_penalty"):
        assert dropped not in out
    assert translate(stop=["a", "b"], max_tokens=7)["stop_sequences"] == ["a", "b"]
    assert translate(max_tokens=7)["max_tokens"] == 7


def test_a_conversation_with_tool_calls_becomes_tool_use_and_tool_result_blocks():
    messages = [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call.2", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call.2",
         "content": [{"type": "text", "text": "rain"}]},
        {"role": "user", "content": "and so?"},
    ]
    out = translate(messages=messages, tools=[WEATHER])
    assert out["messages"] == [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather",
             "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather",
             "input": {"city": "Rome"}}]},  # an id Claude would refuse is made safe
        {"role": "user", "content": [  # the tool results and the next question: one user turn
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "rain"},
            {"type": "text", "text": "and so?"}]},
    ]
    assert out["tools"] == [{"name": "get_weather", "description": "Weather for a city.",
                             "input_schema": WEATHER["function"]["parameters"]}]
    assert "tool_choice" not in out  # auto is Anthropic's default too


def test_consecutive_same_role_turns_are_merged_and_tool_results_put_first():
    out = translate(messages=[
        {"role": "user", "content": "one"}, {"role": "user", "content": ""},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}]},
        {"role": "user", "content": "before the result"},
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
    ])
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"},
                                     {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                           "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                      "content": "42"},
                                     {"type": "text", "text": "before the result"}]},
    ]


def test_images_and_pdfs():
    out = translate(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=",
                                            "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "file", "file": {"filename": "a.pdf",
                                  "file_data": "data:application/pdf;base64,JVBERi0xLjQK"}},
    ]}])
    assert out["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                        "data": "JVBERi0xLjQK"}},
    ]


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
])
def test_tool_choice(choice, parallel, expected):
    out = translate(tools=[WEATHER], tool_choice=choice, parallel_tool_calls=parallel)
    assert out["tool_choice"] == expected


def test_strict_tools_and_json_schema_output():
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    out = translate(tools=[strict], response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    assert out["tools"][0]["strict"] is True
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "output_config" not in translate(response_format={"type": "text"})


@pytest.mark.parametrize(("body", "param", "words"), [
    ({"n": 2}, "n", "one choice"),
    ({"logprobs": True}, "logprobs", "log probabilities"),
    ({"top_logprobs": 3}, "top_logprobs", "log probabilities"),
    ({"presence_penalty": 0.5}, "presence_penalty", "no presence_penalty"),
    ({"logit_bias": {"50256": -100}}, "logit_bias", "logit_bias"),
    ({"response_format": {"type": "json_object"}}, "response_format", "json_schema"),
    ({"functions": [{"name": "f"}]}, "functions", "tools"),
    ({"modalities": ["text", "audio"]}, "modalities", "cannot be translated"),
    ({"reasoning_effort": "high"}, "reasoning_effort", "cannot be translated"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]", "function tools"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"messages": [{"role": "system", "content": "only this"}]}, "messages", "user message"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role",
     "role"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id",
     "tool_call_id"),
    ({"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]},
     "messages[0].content[0]", "Claude takes text, image_url and PDF"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}}]}]},
     "messages[0].content[0]", "image/jpeg"),
    ({"messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": "file-123"}}]}]},
     "messages[0].content[0]", "file_data"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{nope"}}]}]},
     "messages[1].tool_calls[0]", "JSON object"),
])
def test_what_cannot_be_translated_is_refused_with_a_400_naming_the_field(body, param, words):
    with pytest.raises(InvalidField) as caught:
        translate(**body)
    error = caught.value
    assert error.status == 400 and error.param == param
    assert words in error.message
    envelope = orjson.loads(render(error))["error"]
    assert envelope["type"] == "invalid_request_error" and envelope["code"] == "invalid_value"


# --- 1. answer translation --------------------------------------------------------------------

ANTHROPIC_MESSAGE = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
    "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me check. "},
                {"type": "text", "text": "One moment."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
                 "input": {"city": "Paris"}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 100, "cache_read_input_tokens": 2000,
              "cache_creation_input_tokens": 300, "output_tokens": 40},
}


def test_a_message_becomes_a_chat_completion():
    completion = message_to_completion(ANTHROPIC_MESSAGE, created=1_700_000_000)
    validate(completion, "CreateChatCompletionResponse")
    assert completion["id"] == "msg_01" and completion["model"] == "claude-haiku-4-5"
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check. One moment."
    assert choice["message"]["tool_calls"] == [
        {"id": "toolu_01", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert completion["usage"] == {
        "prompt_tokens": 2400, "completion_tokens": 40, "total_tokens": 2440,
        "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 300}}


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"),
    ("model_context_window_exceeded", "length"), ("pause_turn", "stop"),
])
def test_stop_reasons(stop_reason, finish):
    message = {**ANTHROPIC_MESSAGE, "content": [{"type": "text", "text": "x"}],
               "stop_reason": stop_reason}
    completion = message_to_completion(message)
    assert completion["choices"][0]["finish_reason"] == finish
    assert "tool_calls" not in completion["choices"][0]["message"]


# --- 1. stream translation --------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n"
                    for e in events)


def block(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


TOOL_STREAM = sse(
    {"type": "message_start", "message": {
        "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 472, "cache_read_input_tokens": 100,
                  "cache_creation_input_tokens": 0, "output_tokens": 2}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    block(0, {"type": "text_delta", "text": "Okay,"}),
    block(0, {"type": "text_delta", "text": " let me check."}),
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x", "name": "get_weather", "input": {}}},
    block(1, {"type": "input_json_delta", "partial_json": ""}),
    block(1, {"type": "input_json_delta", "partial_json": '{"city": "San'}),
    block(1, {"type": "input_json_delta", "partial_json": ' Francisco"}'}),
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}},
    block(2, {"type": "input_json_delta", "partial_json": "{}"}),
    {"type": "content_block_stop", "index": 2},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
     "usage": {"output_tokens": 89}},
    {"type": "message_stop"},
)


def openai_events(data: bytes) -> list[Any]:
    events = [e for e in data.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    return [e[6:] if e == b"data: [DONE]" else orjson.loads(e[6:]) for e in events]


def test_a_stream_becomes_openai_chunks_ending_with_usage_and_done():
    translator = StreamTranslator(created=1_700_000_000)
    events = openai_events(translator.feed(TOOL_STREAM) + translator.finish())
    assert events[-1] == b"[DONE]"
    chunks = events[:-1]
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
        assert chunk["id"] == "msg_02" and chunk["model"] == "claude-haiku-4-5"
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert "".join(d.get("content") or "" for d in deltas) == "Okay, let me check."
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "toolu_01T1x", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert "".join(c["function"]["arguments"] for c in calls if c["index"] == 0) \
        == '{"city": "San Francisco"}'
    assert calls[-2]["id"] == "toolu_02" and calls[-2]["index"] == 1
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 572, "completion_tokens": 89, "total_tokens": 661,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0}}


def test_a_stream_split_anywhere_translates_the_same():
    whole = StreamTranslator(created=1)
    expected = whole.feed(TOOL_STREAM) + whole.finish()
    rng = random.Random(7)
    for attempt in range(40):
        translator = StreamTranslator(created=1)
        data = TOOL_STREAM.replace(b"\n", b"\r\n") if attempt % 2 else TOOL_STREAM
        out, position = [], 0
        while position < len(data):
            step = 1 if attempt == 0 else rng.randint(1, 40)
            out.append(translator.feed(data[position:position + step]))
            position += step
        out.append(translator.finish())
        assert b"".join(out) == expected


def test_without_include_usage_no_usage_travels():
    translator = StreamTranslator(include_usage=False)
    events = openai_events(translator.feed(TOOL_STREAM))
    assert events[-1] == b"[DONE]"
    assert all("usage" not in e and e["choices"] for e in events[:-1])


def test_an_error_event_mid_stream_becomes_an_openai_error_event():
    start = TOOL_STREAM.split(b"event: content_block_stop", 1)[0]
    error = sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    translator = StreamTranslator()
    events = openai_events(translator.feed(start + error + b"event: message_stop\ndata: {}\n\n"))
    assert translator.done
    assert events[-1] == {"error": {"message": "Overloaded", "type": "api_error", "param": None,
                                    "code": "overloaded"}}
    assert events[-2]["choices"] == [] and events[-2]["usage"]["prompt_tokens"] == 572
    assert b"[DONE]" not in events  # the stream failed: no [DONE], as OpenAI does


def test_a_stream_cut_before_message_stop_has_no_done():
    cut = TOOL_STREAM.split(b"event: message_delta", 1)[0]
    translator = StreamTranslator()
    events = openai_events(translator.feed(cut) + translator.finish())
    assert b"[DONE]" not in events and all(e["usage"] is None for e in events)


def test_a_last_event_without_its_blank_line_is_still_read():
    translator = StreamTranslator()
    out = translator.feed(TOOL_STREAM.rstrip(b"\n"))
    assert b"[DONE]" not in out
    assert translator.finish().endswith(b"data: [DONE]\n\n")


# --- 1. errors ------------------------------------------------------------------------------


def anthropic_error(kind: str, message: str = "boom") -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message},
                         "request_id": "req_1"})


@pytest.mark.parametrize(("status", "kind", "new_status", "code"), [
    (400, "invalid_request_error", 400, "invalid_request"),
    (401, "authentication_error", 401, "invalid_api_key"),
    (403, "permission_error", 403, "permission_denied"),
    (404, "not_found_error", 404, "not_found"),
    (413, "request_too_large", 413, "request_too_large"),
    (429, "rate_limit_error", 429, "rate_limit_exceeded"),
    (500, "api_error", 500, "server_error"),
    (529, "overloaded_error", 503, "overloaded"),
    (504, "timeout_error", 504, "upstream_timeout"),
    (409, "conflict_error", 409, "conflict_error"),
])
def test_errors_map_to_openai_statuses_and_codes(status, kind, new_status, code):
    mapped_status, body = error_to_openai(status, anthropic_error(kind))
    assert mapped_status == new_status
    validate(orjson.loads(body), "ErrorResponse")
    assert orjson.loads(body)["error"]["code"] == code
    assert orjson.loads(body)["error"]["message"] == "boom"


def test_prompt_too_long_is_a_context_length_error_and_unknown_models_are_named():
    _, body = error_to_openai(400, anthropic_error(
        "invalid_request_error", "prompt is too long: 208310 tokens > 200000 maximum"))
    assert orjson.loads(body)["error"]["code"] == "context_length_exceeded"
    _, body = error_to_openai(404, anthropic_error("not_found_error", "model: claude-nope"))
    assert orjson.loads(body)["error"]["code"] == "model_not_found"


def test_an_error_that_is_not_json_still_gets_an_openai_envelope():
    status, body = error_to_openai(502, b"<html>Bad gateway</html>")
    error = orjson.loads(body)["error"]
    assert status == 502 and error["code"] == "upstream_http_502"
    assert error["message"] == "Anthropic answered HTTP 502."


# --- prices ---------------------------------------------------------------------------------


def test_claude_models_are_priced_with_cache_reads_and_writes():
    book = PriceBook()
    # claude-haiku-4-5: $1 / MTok in, $5 out, $0.10 cache read, $1.25 cache write.
    cost = book.cost("anthropic", "claude-haiku-4-5",
                     TokenUsage(prompt_tokens=1000, completion_tokens=100, cached_tokens=100,
                                cache_write_tokens=500))
    assert cost.known
    assert cost.usd == Decimal("0.001535000")  # (400 x 1 + 100 x 0.1 + 500 x 1.25 + 100 x 5) / M
    dated = book.cost("anthropic", "claude-sonnet-4-5-20250929", TokenUsage(1000, 100))
    assert dated.known and dated.usd == Decimal("0.004500000")  # 1000 x 3 + 100 x 15, per MTok


# --- the adapter, in process ----------------------------------------------------------------


def make_provider(**settings: Any) -> tuple[AnthropicProvider, Any]:
    mock = create_anthropic_mock_app(AnthropicMockSettings(api_key=ANTHROPIC_KEY, **settings))
    spec = ProviderSpec(name="claude", type="anthropic", base_url="http://anthropic.test",
                        source="config", models=(MODEL,))
    provider = build_provider(spec, ANTHROPIC_KEY, ASGITransport(mock), read_timeout=10)
    assert isinstance(provider, AnthropicProvider)
    return provider, mock


def test_the_adapter_sends_a_messages_request_with_anthropics_headers():
    async def main() -> None:
        provider, mock = make_provider()
        assert provider.capabilities.supports(Endpoint.CHAT)
        assert not provider.capabilities.supports(Endpoint.EMBEDDINGS)
        assert not provider.capabilities.supports(Endpoint.RESPONSES)
        body = orjson.dumps({"model": "claude", "messages": user("hi [[mock:tokens=3]]"),
                             "max_tokens": 20})
        response = await provider.send(Endpoint.CHAT, MODEL, body, stream=False)
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-request-id"].startswith("req_")
        completion = orjson.loads(await response.read())
        assert completion["choices"][0]["message"]["content"] == "This is a"
        sent = mock.received[-1]
        assert sent.path == "/v1/messages"
        assert sent.headers["x-api-key"] == ANTHROPIC_KEY
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in sent.headers
        assert sent.json()["max_tokens"] == 20 and sent.json()["model"] == MODEL

        listed = await provider.send(Endpoint.MODELS, "", None, stream=False)
        document = orjson.loads(await listed.read())
        assert document["object"] == "list"
        assert [m["id"] for m in document["data"]] == list(AnthropicMockSettings().models)
        assert mock.received[-1].path == "/v1/models"

    asyncio.run(main())


def test_the_adapter_passes_retry_after_and_maps_overload():
    async def main() -> None:
        provider, _ = make_provider()
        for directive, status in (("[[mock:status=429]]", 429), ("[[mock:status=529]]", 503)):
            body = orjson.dumps({"model": MODEL, "messages": user(f"x {directive}"),
                                 "stream": True})
            response = await provider.send(Endpoint.CHAT, MODEL, body, stream=True)
            assert response.status == status
            assert response.headers["content-type"] == "application/json"
            if status == 429:
                assert response.headers["retry-after"] == "1"
            validate(orjson.loads(await response.read()), "ErrorResponse")

    asyncio.run(main())


def test_the_adapter_streams_openai_chunks():
    async def main() -> None:
        provider, _ = make_provider()
        body = orjson.dumps({"model": MODEL, "stream": True,
                             "stream_options": {"include_usage": True},
                             "messages": user("hi [[mock:tokens=5]] [[mock:cache_write=7]]")})
        response = await provider.send(Endpoint.CHAT, MODEL, body, stream=True)
        assert response.headers["content-type"] == "text/event-stream"
        data = b"".join([chunk async for chunk in response.iter_chunks()])
        events = openai_events(data)
        assert events[-1] == b"[DONE]"
        usage = events[-2]["usage"]
        assert usage["completion_tokens"] == 5
        assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 7}

    asyncio.run(main())


def test_a_refused_request_never_reaches_anthropic():
    async def main() -> None:
        provider, mock = make_provider()
        body = orjson.dumps({"model": MODEL, "messages": user("hi"), "n": 3})
        with pytest.raises(InvalidField):
            await provider.send(Endpoint.CHAT, MODEL, body, stream=False)
        assert not mock.received

    asyncio.run(main())


# --- 2. the mock speaks Anthropic: the official SDK over real HTTP --------------------------


def serve_in_thread(app: Any, lifespan: str = "off") -> Iterator[str]:
    """`app` under uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server thread died while starting"
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    yield from serve_in_thread(create_anthropic_mock_app(AnthropicMockSettings(
        api_key=ANTHROPIC_KEY, models=(MODEL, "claude-sonnet-4-5"))))


@pytest.fixture(scope="module")
def sdk(mock_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=mock_url, api_key=ANTHROPIC_KEY, max_retries=0,
                             timeout=20) as client:
        yield client


def test_sdk_parses_a_message(sdk: anthropic.Anthropic):
    message = sdk.messages.create(model=MODEL, max_tokens=100, system="be brief",
                                  messages=[{"role": "user", "content": "hello [[mock:tokens=4]]"}],
                                  stop_sequences=["mock"])
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "mock"
    assert message.content[0].type == "text"
    assert message.content[0].text == "This is a "
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 3
    capped = sdk.messages.create(model=MODEL, max_tokens=2, messages=[
        {"role": "user", "content": "hello"}])
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 2


def test_sdk_parses_tool_use_and_takes_the_result_back(sdk: anthropic.Anthropic):
    tool = {"name": "get_weather", "description": "Weather.",
            "input_schema": WEATHER["function"]["parameters"]}
    question = {"role": "user", "content": "weather in Paris?"}
    message = sdk.messages.create(model=MODEL, max_tokens=100, tools=[tool],
                                  messages=[question])
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    call = message.content[1]
    assert call.type == "tool_use" and call.name == "get_weather"
    assert call.input == {"city": "mock"}
    answer = sdk.messages.create(model=MODEL, max_tokens=100, tools=[tool], messages=[
        question, {"role": "assistant", "content": [b.model_dump() for b in message.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": "sunny"}]}])
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    forced = sdk.messages.create(model=MODEL, max_tokens=100, tools=[tool],
                                 tool_choice={"type": "tool", "name": "get_weather"},
                                 messages=[question])
    assert [b.type for b in forced.content] == ["tool_use"]


def test_sdk_streams(sdk: anthropic.Anthropic):
    with sdk.messages.stream(model=MODEL, max_tokens=100, messages=[
            {"role": "user", "content": "stream please [[mock:tokens=6]] "
                                        "[[mock:cache_read=50]]"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "This is a mock reply to:"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6 and final.usage.cache_read_input_tokens == 50
    tool = {"name": "lookup", "input_schema": {"type": "object", "properties": {
        "q": {"type": "string"}, "n": {"type": "integer", "minimum": 3}}, "required": ["q", "n"]}}
    with sdk.messages.stream(model=MODEL, max_tokens=100, tools=[tool],
                             tool_choice={"type": "any"},
                             messages=[{"role": "user", "content": "look it up"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"q": "mock", "n": 3}


def test_sdk_raises_the_right_errors(sdk: anthropic.Anthropic, mock_url: str):
    def ask(text: str) -> Any:
        return sdk.messages.create(model=MODEL, max_tokens=10,
                                   messages=[{"role": "user", "content": text}])

    with pytest.raises(anthropic.RateLimitError) as limited:
        ask("[[mock:status=429]]")
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.OverloadedError):
        ask("[[mock:status=529]]")
    with pytest.raises(anthropic.BadRequestError) as too_long:
        ask("[[mock:prompt_too_long]]")
    assert "prompt is too long" in too_long.value.message
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="claude-nope", max_tokens=10,
                            messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as extra:
        sdk.messages.create(model=MODEL, max_tokens=10, extra_body={"n": 2},
                            messages=[{"role": "user", "content": "x"}])
    assert "Extra inputs are not permitted" in extra.value.message
    with pytest.raises(anthropic.BadRequestError) as orphan:
        sdk.messages.create(model=MODEL, max_tokens=10, messages=[
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x",
                                          "content": "?"}]}])
    assert "tool_use_id" in orphan.value.message
    with anthropic.Anthropic(base_url=mock_url, api_key="wrong", max_retries=0) as other, \
            pytest.raises(anthropic.AuthenticationError):
        other.messages.create(model=MODEL, max_tokens=10,
                              messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.APIStatusError) as mid_stream, sdk.messages.stream(
            model=MODEL, max_tokens=100,
            messages=[{"role": "user", "content": "x [[mock:stream_error=2]]"}]) as stream:
        for _ in stream.text_stream:
            pass
    assert "overloaded_error" in str(mid_stream.value)


def test_sdk_lists_models_and_counts_tokens(sdk: anthropic.Anthropic):
    assert [m.id for m in sdk.models.list()] == [MODEL, "claude-sonnet-4-5"]
    assert sdk.models.retrieve(MODEL).id == MODEL
    counted = sdk.messages.count_tokens(model=MODEL, messages=[
        {"role": "user", "content": "one two three"}])
    assert counted.input_tokens == 3 + 3 + 3


# --- 3. end to end: the openai SDK -> keystead -> Anthropic (the mock, over HTTP) --------------


class Gateway:
    def __init__(self, url: str, db: Path, key: str):
        self.url, self.db, self.key = url, db, key

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.key, max_retries=0,
                             timeout=20)

    def ledger(self, request_id: str) -> Any:
        return wait_for_rows(self.db, "request_id = ?", (request_id,), 1)[0]


@pytest.fixture(scope="module")
def openai_mock_url() -> Iterator[str]:
    """An OpenAI-compatible server standing in for Gemini's OpenAI endpoint."""
    yield from serve_in_thread(create_mock_app(MockSettings(api_key=GEMINI_KEY)))


@pytest.fixture(scope="module")
def gateway(mock_url: str, openai_mock_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("anthropic-gateway")
    loaded = make_loaded(tmp, {"providers": {
        "claude": {"type": "anthropic", "base_url": mock_url, "api_key": "${ANTHROPIC_API_KEY}",
                   "models": [MODEL, "claude-sonnet-4-5"]},
        "gem": {"type": "gemini", "base_url": openai_mock_url + "/v1",
                "api_key": "${GEMINI_API_KEY}", "models": ["gemini-2.5-flash"]},
    }}, env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "GEMINI_API_KEY": GEMINI_KEY})
    for url in serve_in_thread(create_app(loaded), lifespan="on"):
        status, _, created = http("POST", url + "/admin/keys", body={"name": "dev-claude-app"},
                                  headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert status == 201, created
        yield Gateway(url, tmp / "keystead.db", json.loads(created)["key"])


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[openai.OpenAI]:
    with gateway.client() as c:
        yield c


def test_e2e_chat(client: openai.OpenAI, gateway: Gateway):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "system", "content": "be brief"},
                               {"role": "user", "content": "hello claude [[mock:tokens=5]]"}],
        max_tokens=50, extra_headers={"x-request-id": "e2e-claude-chat"})
    validate(json.loads(raw.text), "CreateChatCompletionResponse")
    assert raw.headers["x-keystead-provider"] == "claude"
    assert raw.headers["x-upstream-request-id"].startswith("req_")
    assert Decimal(raw.headers["x-keystead-cost-usd"]) > 0  # claude-haiku-4-5 is priced
    completion = raw.parse()
    assert completion.choices[0].message.content == "This is a mock reply"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    row = gateway.ledger("e2e-claude-chat")
    assert row["provider"] == "claude" and row["status"] == 200
    assert row["completion_tokens"] == 5 and row["cost_nanousd"] > 0


def test_e2e_stream_with_usage_is_priced(client: openai.OpenAI, gateway: Gateway):
    stream = client.chat.completions.create(
        model=MODEL, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream [[mock:tokens=7]] [[mock:cache_read=1000]]"}],
        extra_headers={"x-request-id": "e2e-claude-stream"})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "This is a mock reply to: stream"
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == 7
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1000
    row = gateway.ledger("e2e-claude-stream")
    assert row["stream"] and not row["usage_estimated"]
    assert row["prompt_tokens"] == usage.prompt_tokens and row["cached_tokens"] == 1000
    assert row["completion_tokens"] == 7 and row["cost_nanousd"] > 0


def test_e2e_stream_without_usage_hides_it_but_records_it(client: openai.OpenAI,
                                                         gateway: Gateway):
    stream = client.chat.completions.create(
        model=MODEL, stream=True, messages=[{"role": "user", "content": "hi [[mock:tokens=3]]"}],
        extra_headers={"x-request-id": "e2e-claude-stream-2"})
    chunks = list(stream)
    assert all(c.usage is None and c.choices for c in chunks)
    row = gateway.ledger("e2e-claude-stream-2")
    assert row["completion_tokens"] == 3 and not row["usage_estimated"]


def test_e2e_tools_round_trip(client: openai.OpenAI):
    question = {"role": "user", "content": "weather in Paris?"}
    first = client.chat.completions.create(model=MODEL, messages=[question], tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I will use get_weather."
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}
    second = client.chat.completions.create(model=MODEL, tools=[WEATHER], messages=[
        question, choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith("This is a mock reply to: sunny")

    stream = client.chat.completions.create(model=MODEL, messages=[question], tools=[WEATHER],
                                            tool_choice="required", stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    calls = [t for d in deltas for t in d.tool_calls or []]
    assert calls[0].id and calls[0].function.name == "get_weather"
    assert json.loads("".join(t.function.arguments or "" for t in calls)) == {"city": "mock"}


def test_e2e_errors(client: openai.OpenAI, gateway: Gateway):
    def ask(text: str, **extra: Any) -> Any:
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], **extra)

    with pytest.raises(openai.RateLimitError) as limited:
        ask("[[mock:status=429]]")
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.BadRequestError) as too_long:
        ask("[[mock:prompt_too_long]]")
    assert too_long.value.code == "context_length_exceeded"
    assert "prompt is too long" in too_long.value.message
    with pytest.raises(openai.InternalServerError) as overloaded:
        ask("[[mock:status=529]]")
    assert overloaded.value.status_code == 503 and overloaded.value.code == "overloaded"
    with pytest.raises(openai.BadRequestError) as refused:
        ask("x", n=2)
    assert refused.value.code == "invalid_value" and refused.value.param == "n"
    with pytest.raises(openai.APIError) as mid_stream:
        for _ in ask("x [[mock:stream_error=2]]", stream=True,
                     extra_headers={"x-request-id": "e2e-claude-broken"}):
            pass
    assert "Overloaded" in str(mid_stream.value)
    row = gateway.ledger("e2e-claude-broken")  # what was spent before the error is recorded
    assert row["prompt_tokens"] > 0 and not row["usage_estimated"]
    with pytest.raises(openai.NotFoundError) as embeddings:  # declared: chat only
        client.embeddings.create(model=MODEL, input="x")
    assert embeddings.value.code == "model_not_found"


def test_e2e_gemini_through_its_openai_endpoint_is_priced(client: openai.OpenAI,
                                                          gateway: Gateway):
    raw = client.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi [[mock:tokens=4]]"}],
        extra_headers={"x-request-id": "e2e-gemini-chat"})
    assert raw.headers["x-keystead-provider"] == "gem"
    assert Decimal(raw.headers["x-keystead-cost-usd"]) > 0  # Google's table knows the model
    assert raw.parse().usage.completion_tokens == 4
    row = gateway.ledger("e2e-gemini-chat")
    assert row["provider"] == "gem" and row["cost_nanousd"] > 0
