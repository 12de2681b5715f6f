"""Anthropic's stream -> OpenAI chunks, split anywhere: usage and [DONE] at the end, an error
event as OpenAI's mid-stream error, a cut stream without [DONE]."""

from __future__ import annotations

import random
from typing import Any

import orjson

from keystead.providers.anthropic_stream import StreamTranslator
from openapi_schemas import validate
from providers.anthropic_fixtures import openai_events


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
