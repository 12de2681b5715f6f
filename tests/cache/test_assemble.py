"""A provider's stream -> the answer the cache stores: chat chunks and Responses events from the
mock upstream's real streams, split anywhere, damaged or noisy, checked against OpenAI's
published schemas."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from cache.codec_fixtures import (
    CHAT,
    RESPONSES,
    WEATHER_TOOL,
    assemble,
    chat_payload,
    mock_call,
    resplit,
)
from keystead.cache.assemble import (
    CompletionAssembler,
    ResponseAssembler,
    completion_from_stream,
    response_from_stream,
)
from openapi_schemas import validate


def without_ids(completion: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(completion)
    out.pop("id")
    out.pop("created")
    for choice in out["choices"]:
        choice["message"].pop("annotations", None)  # the mock's unstreamed answer adds []
        for call in choice["message"].get("tool_calls") or ():
            call.pop("id")
    return out


@pytest.mark.parametrize("extra", [
    {},
    {"n": 2},
    {"tools": [WEATHER_TOOL]},
    {"response_format": {"type": "json_object"}},
])
def test_a_mock_stream_assembles_to_the_unstreamed_answer(extra: dict[str, Any]) -> None:
    payload = chat_payload(**extra)
    unstreamed = orjson.loads(b"".join(mock_call(CHAT, payload)))
    streamed = mock_call(CHAT, {**payload, "stream": True,
                                "stream_options": {"include_usage": True}})
    assembled = assemble(streamed)
    assert without_ids(assembled) == without_ids(unstreamed)
    assert assembled["id"].startswith("chatcmpl-") and assembled["object"] == "chat.completion"


def test_bytes_split_anywhere_assemble_to_the_same_answer() -> None:
    streamed = mock_call(CHAT, chat_payload(tools=[WEATHER_TOOL], n=2, stream=True,
                                            stream_options={"include_usage": True}))
    whole = assemble(streamed)
    assert assemble([b"".join(streamed)]) == whole
    assert assemble(resplit(streamed, sizes=1)) == whole
    assert assemble(resplit(streamed, sizes=7)) == whole
    for seed in range(5):
        assert assemble(resplit(streamed, seed=seed)) == whole
    crlf = [b"".join(streamed).replace(b"\n", b"\r\n")]
    assert assemble(crlf) == whole


def test_comments_and_filter_events_are_ignored() -> None:
    streamed = mock_call(CHAT, chat_payload(stream=True))
    whole = assemble(streamed)
    azure_filter = (b'data: {"choices":[],"created":0,"id":"","model":"","object":"",'
                    b'"prompt_filter_results":[{"prompt_index":0}]}\n\n')
    noisy = [b": keepalive\n\n", azure_filter, *streamed[:-1],
             b": keystead-cost-usd 0.0001\n\n", streamed[-1]]
    assert assemble(noisy) == whole


def test_an_id_repeated_in_every_fragment_is_not_concatenated() -> None:
    base = b'{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":['
    chunks = [
        base + b'{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1",'
               b'"type":"function","function":{"name":"f","arguments":"{\\"a\\""}}]}}]}',
        base + b'{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function",'
               b'"function":{"arguments":": 1}"}}]}}]}',
        base + b'{"index":0,"delta":{},"finish_reason":"tool_calls"}]}',
    ]
    events = [b"data: " + c + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
    call = assemble(events)["choices"][0]["message"]["tool_calls"][0]
    assert call == {"id": "call_1", "type": "function",
                    "function": {"name": "f", "arguments": '{"a": 1}'}}


@pytest.mark.parametrize("damage", ["cut_before_finish", "no_done", "error", "garbage"])
def test_an_incomplete_or_failed_stream_gives_nothing_to_store(damage: str) -> None:
    events = mock_call(CHAT, chat_payload(stream=True, stream_options={"include_usage": True}))
    if damage == "cut_before_finish":
        events = events[:3]
    elif damage == "no_done":
        events = events[:-1]
        body = completion_from_stream(events, require_done=False)
        assert body is not None and "usage" in orjson.loads(body)  # if the caller accepts it
    elif damage == "error":
        events = [*events[:3], b'data: {"error": {"message": "overloaded"}}\n\n', events[-1]]
    else:
        events = [*events[:3], b"data: {not json\n\n", *events[3:]]
    assert completion_from_stream(events) is None


def test_an_answer_over_the_size_cap_is_not_kept() -> None:
    events = mock_call(CHAT, chat_payload("[[mock:tokens=400]] go", stream=True))
    assert completion_from_stream(events, max_bytes=300) is None
    assembler = CompletionAssembler(max_bytes=300)
    for event in events:
        assembler.feed(event)
    assert assembler.failed and assembler.result() is None
    assert completion_from_stream(events) is not None


def test_an_empty_stream_gives_nothing() -> None:
    assert completion_from_stream([]) is None
    assert completion_from_stream([b"data: [DONE]\n\n"]) is None


def test_a_last_event_without_its_blank_line_still_counts() -> None:
    events = mock_call(CHAT, chat_payload(stream=True))
    blob = b"".join(events)
    assert blob.endswith(b"data: [DONE]\n\n")
    assert completion_from_stream([blob[:-2]]) == completion_from_stream(events) is not None
    assembler = CompletionAssembler()
    assembler.feed(blob[:-2])
    assert not assembler.done and assembler.result() is None
    assembler.end()
    assert assembler.done and assembler.result() is not None


# --- Responses API ------------------------------------------------------------------------------


def test_the_mock_responses_stream_ends_with_the_unstreamed_answer() -> None:
    payload = {"model": "gpt-4o-mini", "input": "Tell me about Paris"}
    unstreamed = orjson.loads(b"".join(mock_call(RESPONSES, payload)))
    streamed = mock_call(RESPONSES, {**payload, "stream": True})
    body = response_from_stream(resplit(streamed, seed=1))
    assert body is not None
    stored = orjson.loads(body)
    validate(stored, "Response")
    for response in (stored, unstreamed):
        response.pop("id"), response.pop("created_at"), response.pop("completed_at")
        response["output"][0].pop("id")
    assert stored == unstreamed


def test_an_incomplete_response_is_an_answer_and_a_failed_one_is_not() -> None:
    streamed = mock_call(RESPONSES, {"model": "gpt-4o-mini", "input": "hi", "stream": True,
                                     "max_output_tokens": 3})
    body = response_from_stream(streamed)
    assert body is not None and orjson.loads(body)["status"] == "incomplete"
    failed = (b'event: response.failed\ndata: {"type":"response.failed","sequence_number":1,'
              b'"response":{"id":"r","status":"failed"}}\n\n')
    assert response_from_stream([streamed[0], failed]) is None
    error = b'data: {"type":"error","code":"server_error","message":"x","sequence_number":2}\n\n'
    assert response_from_stream([*streamed[:2], error, *streamed[2:]]) is None
    assert response_from_stream(streamed[:-1]) is None  # cut before the end
    assert response_from_stream(streamed, max_bytes=100) is None


def test_responses_events_without_event_lines_and_a_done_are_read() -> None:
    streamed = mock_call(RESPONSES, {"model": "gpt-4o-mini", "input": "hi", "stream": True})
    bare = [b"\n".join(line for line in e.split(b"\n") if not line.startswith(b"event:"))
            for e in streamed]
    assembler = ResponseAssembler()
    for piece in resplit([*bare, b"data: [DONE]\n\n"], sizes=11):
        assembler.feed(piece)
    assert assembler.result() == response_from_stream(streamed) is not None
