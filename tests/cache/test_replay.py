"""A stored answer -> the stream OpenAI would have sent: chat chunks and Responses events, valid
against OpenAI's published schemas, that assemble back to the stored answer."""

from __future__ import annotations

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
    rich_completion,
    rich_response,
    sse_payloads,
)
from keystead.cache.assemble import response_from_stream
from keystead.cache.replay import stream_from_completion, stream_from_response
from openapi_schemas import validate


def replay(completion: dict[str, Any], include_usage: bool, chunk_chars: int = 5
           ) -> list[bytes]:
    events = stream_from_completion(orjson.dumps(completion), include_usage=include_usage,
                                    chunk_chars=chunk_chars)
    for _, chunk in sse_payloads(events)[:-1]:
        validate(chunk, "CreateChatCompletionStreamResponse")
    return events


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


def validate_events(events: list[bytes]) -> list[dict[str, Any]]:
    payloads = sse_payloads(events)
    for n, (name, event) in enumerate(payloads):
        assert name == event["type"] and event["sequence_number"] == n
        validate(event, "ResponseStreamEvent")
    return [event for _, event in payloads]


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
