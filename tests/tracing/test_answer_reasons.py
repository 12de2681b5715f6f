"""Finish reasons and the response id, read from an answer only when tracing; what a provider
writes there is bounded before it reaches a span."""

from __future__ import annotations

import json

from keystead.tracing.answer import from_body, from_events


def test_whole_chat_answer() -> None:
    body = json.dumps({"id": "chatcmpl-1", "choices": [
        {"index": 0, "finish_reason": "stop"}, {"index": 1, "finish_reason": "length"}]})
    assert from_body(body.encode()) == ("chatcmpl-1", ("stop", "length"))


def test_anthropic_answer_and_embeddings() -> None:
    assert from_body(b'{"id":"msg_1","stop_reason":"end_turn"}') == ("msg_1", ("end_turn",))
    assert from_body(b'{"object":"list","data":[]}') == (None, ())


def test_not_json_or_wrong_types_give_nothing() -> None:
    assert from_body(b"not json") == (None, ())
    assert from_body(b'{"id": 5, "choices": "x"}') == (None, ())


def test_hostile_values_are_dropped() -> None:
    body = json.dumps({"id": "x" * 500, "choices": [
        {"finish_reason": "stop\nforged"}, {"finish_reason": "é"}, {"finish_reason": "y" * 99}]
        + [{"finish_reason": "stop"}] * 100})
    response_id, reasons = from_body(body.encode())
    assert response_id is None
    assert reasons == ("stop",) * 13  # 16 choices read at most, 3 of them refused


def test_stream_payloads() -> None:
    events = [b'{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"content":"a"}}]}',
              *[b'{"id":"chatcmpl-9","choices":[{"index":0,"delta":{"content":"b"},'
                b'"finish_reason":null}]}'] * 50,
              b'{"id":"chatcmpl-9","choices":[{"index":1,"delta":{},"finish_reason":"length"}]}',
              b'{"id":"chatcmpl-9","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}']
    assert from_events(events) == ("chatcmpl-9", ("stop", "length"))
    assert from_events([]) == (None, ())
