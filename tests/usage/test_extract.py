"""Reading usage out of provider responses and stream events."""

from __future__ import annotations

import json

from keystead.usage.extract import usage_from_body, usage_from_event
from keystead.usage.prices import TokenUsage

CHAT_BODY = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1_732_000_000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hello! How can I help?",
                             "refusal": None}}],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
    "system_fingerprint": "fp_0ba0d124f1",
}


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def test_chat_body():
    assert usage_from_body(dumps(CHAT_BODY)) == (
        TokenUsage(prompt_tokens=19, completion_tokens=10, cached_tokens=0),
        "gpt-4o-mini-2024-07-18")


def test_chat_body_with_cached_tokens():
    body = {**CHAT_BODY, "usage": {"prompt_tokens": 2048, "completion_tokens": 12,
                                   "total_tokens": 2060,
                                   "prompt_tokens_details": {"cached_tokens": 1920}}}
    usage, _ = usage_from_body(dumps(body))
    assert usage == TokenUsage(prompt_tokens=2048, completion_tokens=12, cached_tokens=1920)


def test_chat_body_with_null_details():
    body = {**CHAT_BODY, "usage": {"prompt_tokens": 5, "completion_tokens": 1,
                                   "prompt_tokens_details": None}}
    assert usage_from_body(dumps(body))[0] == TokenUsage(5, 1, 0)


def test_embeddings_body():
    body = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.0023, -0.0093] * 768}
                 for i in range(3)],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 24, "total_tokens": 24},
    }
    assert usage_from_body(dumps(body)) == (TokenUsage(prompt_tokens=24, completion_tokens=0),
                                            "text-embedding-3-small")


def test_responses_body():
    body = {
        "id": "resp_67ccd2bed1ec8190b14f964abc054267",
        "object": "response",
        "created_at": 1_741_476_542,
        "status": "completed",
        "model": "gpt-4.1-2025-04-14",
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "In a peaceful grove...",
                                 "annotations": []}]}],
        "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 8},
                  "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": 123},
    }
    assert usage_from_body(dumps(body)) == (
        TokenUsage(prompt_tokens=36, completion_tokens=87, cached_tokens=8), "gpt-4.1-2025-04-14")


def test_body_without_usage_keeps_the_model():
    assert usage_from_body(dumps({"model": "llama3", "choices": []})) == (None, "llama3")
    assert usage_from_body(dumps({"model": "llama3", "usage": None})) == (None, "llama3")


def test_usage_with_null_counts_is_zero():
    body = {"usage": {"prompt_tokens": None, "completion_tokens": None}}
    assert usage_from_body(dumps(body)) == (TokenUsage(0, 0, 0), None)


def test_non_json_body_is_none():
    for body in (b"", b"<html>502 Bad Gateway</html>", b"{\"usage\": ", b"\xff\xfe",
                 b"Internal Server Error"):
        assert usage_from_body(body) == (None, None), body


def test_json_that_is_not_a_response_is_none():
    for body in (b"[]", b"42", b"\"text\"", b"null", b"{\"usage\": \"lots\"}",
                 b"{\"usage\": {\"prompt_tokens\": \"many\"}}"):
        assert usage_from_body(body) == (None, None), body


def test_error_body_is_none():
    body = {"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                      "code": "rate_limit_exceeded"}}
    assert usage_from_body(dumps(body)) == (None, None)


def test_chat_stream_usage_chunk():
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_732_000_000,
             "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_1", "choices": [],
             "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46,
                       "prompt_tokens_details": {"cached_tokens": 4}}}
    assert usage_from_event(dumps(chunk)) == (TokenUsage(12, 34, 4), "gpt-4o-mini-2024-07-18")


def test_chat_stream_content_chunk_has_no_usage():
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}
    assert usage_from_event(dumps(chunk)) == (None, "gpt-4o-mini")
    assert usage_from_event(dumps({**chunk, "usage": None})) == (None, "gpt-4o-mini")


def test_responses_completed_event():
    event = {
        "type": "response.completed",
        "sequence_number": 17,
        "response": {
            "id": "resp_1", "object": "response", "status": "completed",
            "model": "gpt-4.1-mini-2025-04-14",
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hi"}]}],
            "usage": {"input_tokens": 300, "input_tokens_details": {"cached_tokens": 256},
                      "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": 302},
        },
    }
    assert usage_from_event(dumps(event)) == (TokenUsage(300, 2, 256), "gpt-4.1-mini-2025-04-14")


def test_responses_created_event_has_no_usage_yet():
    event = {"type": "response.created", "sequence_number": 0,
             "response": {"id": "resp_1", "status": "in_progress", "model": "gpt-4.1",
                          "usage": None}}
    assert usage_from_event(dumps(event)) == (None, None)


def test_responses_delta_event_has_no_usage():
    event = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
             "content_index": 0, "delta": "Hi", "sequence_number": 5}
    assert usage_from_event(dumps(event)) == (None, None)


def test_non_json_event_is_none():
    assert usage_from_event(b"[DONE]") == (None, None)
    assert usage_from_event(b"") == (None, None)
    assert usage_from_event(b": keep-alive") == (None, None)
