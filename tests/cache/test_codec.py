"""Streams to stored answers and back: chat chunks and Responses events, checked against the
mock upstream's real streams and OpenAI's published schemas."""

from __future__ import annotations

import copy
import random
from typing import Any

import orjson
import pytest

from cache.codec_fixtures import (
    WEATHER_TOOL,
    mock_call,
    rich_completion,
    rich_response,
    sse_payloads,
)
from keystead.cache.codec import (
    CompletionAssembler,
    ResponseAssembler,
    completion_from_stream,
    response_from_stream,
    stream_from_completion,
    stream_from_response,
)
from openapi_schemas import validate

CHAT = "/v1/chat/completions"


def chat_payload(text: str = "Tell me about Paris", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def resplit(events: list[bytes], sizes: int | None = None, seed: int = 0) -> list[bytes]:
    """The same bytes cut elsewhere: every `sizes` bytes, or at random points."""
    blob = b"".join(events)
    if sizes is not None:
        return [blob[i : i + sizes] for i in range(0, len(blob), sizes)]
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(blob)), min(len(blob) - 1, 40)))
    return [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]


def assemble(events: list[bytes], **options: Any) -> dict[str, Any]:
    body = completion_from_stream(events, **options)
    assert body is not None
    completion = orjson.loads(body)
    validate(completion, "CreateChatCompletionResponse")
    return dict(completion)


def replay(completion: dict[str, Any], include_usage: bool, chunk_chars: int = 5
           ) -> list[bytes]:
    events = stream_from_completion(orjson.dumps(completion), include_usage=include_usage,
                                    chunk_chars=chunk_chars)
    for _, chunk in sse_payloads(events)[:-1]:
        validate(chunk, "CreateChatCompletionStreamResponse")
    return events


def without_ids(completion: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(completion)
    out.pop("id")
    out.pop("created")
    for choice in out["choices"]:
        choice["message"].pop("annotations", None)  # the mock's unstreamed answer adds []
        for call in choice["message"].get("tool_calls") or ():
            call.pop("id")
    return out


# --- chat: stream -> completion -----------------------------------------------------------------


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


# --- chat: completion -> stream -----------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [True, False])
def test_replay_has_openais_shape(include_usage: bool) -> None:
    completion = rich_completion()
    events = replay(completion, include_usage)
    payloads = [data for _, data in sse_payloads(events)]
    assert events[-1] == b"data: [DONE]\n\n" and payloads[-1] == "[DONE]"
    chunks = payloads[:-1]
    if include_usage:
        *chunks, usage_chunk = chunks
        assert usage_chunk["choices"] == [] and usage_chunk["usage"] == completion["usage"]
        assert all(chunk["usage"] is None for chunk in chunks)
    else:
        assert all("usage" not in chunk for chunk in chunks)
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-rich" and chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == completion["created"] and chunk["model"] == completion["model"]
        assert chunk["system_fingerprint"] == "fp_abc123" and chunk["service_tier"] == "default"
        assert len(chunk["choices"]) == 1
    by_choice: dict[int, list[dict[str, Any]]] = {}
    for chunk in chunks:
        by_choice.setdefault(chunk["choices"][0]["index"], []).append(chunk["choices"][0])
    assert sorted(by_choice) == [0, 1, 2]
    for index, choices in by_choice.items():
        assert choices[0]["delta"]["role"] == "assistant"
        assert all("role" not in c["delta"] for c in choices[1:])
        assert choices[-1]["delta"] == {}
        assert choices[-1]["finish_reason"] == completion["choices"][index]["finish_reason"]
        assert all(c["finish_reason"] is None for c in choices[:-1])
    # The tool calls: the first header rides in the role chunk (content is null), then for each
    # call its header once (index, id, type, name) and argument fragments with the index only.
    calls = [c["delta"]["tool_calls"][0] for c in by_choice[0] if "tool_calls" in c["delta"]]
    assert calls[0] == {"index": 0, "id": "call_a", "type": "function",
                        "function": {"name": "get_weather", "arguments": ""}}
    assert "tool_calls" in by_choice[0][0]["delta"]
    headers = [c for c in calls if "id" in c]
    assert [h["id"] for h in headers] == ["call_a", "call_b"]
    assert all(set(c) == {"index", "function"} and set(c["function"]) == {"arguments"}
               for c in calls if "id" not in c)
    # Text with logprobs that spell it out: one chunk per token, each with its entry.
    text_chunks = [c for c in by_choice[1] if c["delta"].get("content")]
    assert [c["delta"]["content"] for c in text_chunks] == ["Paris", " is", " lovely", "."]
    assert [len(c["logprobs"]["content"]) for c in text_chunks] == [1, 1, 1, 1]
    # A refusal streams as refusal deltas.
    assert "".join(c["delta"].get("refusal") or "" for c in by_choice[2]) == (
        completion["choices"][2]["message"]["refusal"])


@pytest.mark.parametrize("include_usage", [True, False])
def test_completion_to_stream_to_completion_is_the_identity(include_usage: bool) -> None:
    completion = rich_completion()
    for chunk_chars in (1, 3, 32, 10_000):
        back = assemble(replay(completion, include_usage, chunk_chars))
        expected = completion if include_usage else {
            k: v for k, v in completion.items() if k != "usage"}
        assert back == expected


def test_mock_stream_to_completion_to_stream_round_trips() -> None:
    for extra in ({}, {"tools": [WEATHER_TOOL], "n": 2}, {"n": 3}):
        streamed = mock_call(CHAT, chat_payload(stream=True,
                                                stream_options={"include_usage": True}, **extra))
        first = assemble(streamed)
        again = assemble(resplit(replay(first, include_usage=True), seed=3))
        assert again == first


def test_other_message_fields_and_legacy_function_calls_survive() -> None:
    completion = {
        "id": "c", "object": "chat.completion", "created": 1, "model": "deepseek-reasoner",
        "choices": [
            {"index": 0, "finish_reason": "function_call", "logprobs": None,
             "message": {"role": "assistant", "content": None, "refusal": None,
                         "reasoning_content": "Think first, answer second.",
                         "function_call": {"name": "lookup", "arguments": '{"q": "x"}'}}},
            {"index": 1, "finish_reason": "length", "logprobs": {"content": [], "refusal": None},
             "message": {"role": "assistant", "content": "", "refusal": None}},
        ],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    }
    assert assemble(replay(completion, include_usage=False)) == completion


def test_logprobs_that_do_not_spell_the_text_are_sent_whole() -> None:
    completion = rich_completion()
    completion["choices"][1]["logprobs"]["content"].pop()  # no longer joins to the text
    events = replay(completion, include_usage=False)
    chunks = [data for _, data in sse_payloads(events)[:-1]]
    with_lp = [c for c in chunks if c["choices"][0]["logprobs"] is not None]
    assert len(with_lp) == 1 and with_lp[0]["choices"][0]["finish_reason"] == "stop"
    assert assemble(events) == {k: v for k, v in completion.items() if k != "usage"}


# --- Responses API ------------------------------------------------------------------------------


RESPONSES = "/v1/responses"


def validate_events(events: list[bytes]) -> list[dict[str, Any]]:
    payloads = sse_payloads(events)
    for n, (name, event) in enumerate(payloads):
        assert name == event["type"] and event["sequence_number"] == n
        validate(event, "ResponseStreamEvent")
    return [event for _, event in payloads]


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


def test_mock_response_replays_as_valid_events_and_back() -> None:
    stored = b"".join(mock_call(RESPONSES, {"model": "gpt-4o-mini", "input": "Paris?"}))
    events = stream_from_response(stored, chunk_chars=4)
    payloads = validate_events(events)
    kinds = [p["type"] for p in payloads]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    deltas = "".join(p["delta"] for p in payloads if p["type"] == "response.output_text.delta")
    assert deltas == orjson.loads(stored)["output"][0]["content"][0]["text"]
    assert payloads[0]["response"]["status"] == "in_progress"
    assert payloads[0]["response"]["output"] == [] and "usage" not in payloads[0]["response"]
    assert orjson.loads(response_from_stream(events) or b"") == orjson.loads(stored)


def test_a_rich_response_replays_every_item_kind() -> None:
    response = rich_response()
    events = stream_from_response(orjson.dumps(response), chunk_chars=6)
    payloads = validate_events(events)
    kinds = [p["type"] for p in payloads]
    for kind in ("response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
                 "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
                 "response.function_call_arguments.delta", "response.function_call_arguments.done",
                 "response.output_text.annotation.added", "response.refusal.delta",
                 "response.refusal.done"):
        assert kind in kinds, kind
    added = [p for p in payloads if p["type"] == "response.output_item.added"]
    done = [p for p in payloads if p["type"] == "response.output_item.done"]
    assert [p["output_index"] for p in added] == [p["output_index"] for p in done] == [0, 1, 2, 3]
    assert [p["item"] for p in done] == response["output"]
    assert added[2]["item"]["arguments"] == "" and added[2]["item"]["status"] == "in_progress"
    assert added[3]["item"]["content"] == []
    arguments = "".join(p["delta"] for p in payloads
                        if p["type"] == "response.function_call_arguments.delta")
    assert arguments == response["output"][2]["arguments"]
    text_deltas = [p for p in payloads if p["type"] == "response.output_text.delta"]
    assert [len(p["logprobs"]) for p in text_deltas] == [1] * 7  # one per token
    assert payloads[-1] == {"type": "response.completed", "response": response,
                            "sequence_number": len(payloads) - 1}
    assert orjson.loads(response_from_stream(events) or b"") == response


def test_an_incomplete_response_replays_as_incomplete() -> None:
    stored = b"".join(mock_call(RESPONSES, {"model": "gpt-4o-mini", "input": "hi",
                                            "max_output_tokens": 3}))
    payloads = validate_events(stream_from_response(stored))
    assert payloads[-1]["type"] == "response.incomplete"


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
