"""Answers to replay, for the codec tests (assemble, replay): real ones from the built-in mock
upstream (its wire format is checked against OpenAI's schemas elsewhere) and hand-made ones with
every feature, and the helpers both test modules use."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson

from keystead.cache.assemble import completion_from_stream
from keystead.mocks.openai_upstream import MockSettings, create_mock_app
from openapi_schemas import validate

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}


async def mock_call_async(path: str, payload: dict[str, Any]) -> list[bytes]:
    """The mock's answer body, as the pieces it sent (one per event when streaming)."""
    app = create_mock_app(MockSettings(seed=1))
    body = orjson.dumps(payload)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 50000), "server": ("mock", 80)}
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent
    return [m["body"] for m in sent[1:] if m.get("body")]


def mock_call(path: str, payload: dict[str, Any]) -> list[bytes]:
    return asyncio.run(mock_call_async(path, payload))


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


def sse_payloads(events: list[bytes]) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) of each event; "[DONE]" stays a string."""
    out: list[tuple[str | None, Any]] = []
    for frame in b"".join(events).split(b"\n\n"):
        if not frame:
            continue
        name, data = None, None
        for line in frame.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
        assert data is not None, frame
        out.append((name, "[DONE]" if data == b"[DONE]" else orjson.loads(data)))
    return out


def _lp(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()),
            "top_logprobs": [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]}


def rich_completion() -> dict[str, Any]:
    """n=3: parallel tool calls; text with per-token logprobs and annotations; a refusal."""
    return {
        "id": "chatcmpl-rich", "object": "chat.completion", "created": 1_750_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {"index": 0, "finish_reason": "tool_calls", "logprobs": None,
             "message": {"role": "assistant", "content": None, "refusal": None,
                         "annotations": [],
                         "tool_calls": [
                             {"id": "call_a", "type": "function",
                              "function": {"name": "get_weather",
                                           "arguments": '{"city": "Paris", "days": 3}'}},
                             {"id": "call_b", "type": "function",
                              "function": {"name": "get_time",
                                           "arguments": '{"zone": "Europe/Paris, France"}'}}]}},
            {"index": 1, "finish_reason": "stop",
             "logprobs": {"content": [_lp("Paris", -0.01), _lp(" is", -0.2),
                                      _lp(" lovely", -1.5), _lp(".", -0.001)],
                          "refusal": None},
             "message": {"role": "assistant", "content": "Paris is lovely.", "refusal": None,
                         "annotations": [{"type": "url_citation", "url_citation": {
                             "start_index": 0, "end_index": 5, "title": "Paris",
                             "url": "https://example.com/paris"}}]}},
            {"index": 2, "finish_reason": "stop", "logprobs": None,
             "message": {"role": "assistant", "content": None,
                         "refusal": "I can't help with that request, sorry about it."}},
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 31, "total_tokens": 71,
                  "prompt_tokens_details": {"cached_tokens": 8, "audio_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                "accepted_prediction_tokens": 0,
                                                "rejected_prediction_tokens": 0}},
        "service_tier": "default", "system_fingerprint": "fp_abc123",
    }


def rich_response() -> dict[str, Any]:
    """A Responses API answer with a reasoning summary, a web search, a function call, a
    message with an annotated output_text (logprobs spelling it out) and a refusal part."""
    text = "Paris is the capital of France."
    tokens = ["Paris", " is", " the", " capital", " of", " France", "."]
    return {
        "id": "resp_rich", "object": "response", "created_at": 1_750_000_000,
        "status": "completed", "completed_at": 1_750_000_002, "error": None,
        "incomplete_details": None, "instructions": None, "max_output_tokens": None,
        "model": "gpt-4o-2024-08-06",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [
                {"type": "summary_text", "text": "The user asks for a capital; easy."}]},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
             "action": {"type": "search", "query": "capital of France"}},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city": "Paris", "days": 3}', "status": "completed"},
            {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
             "content": [
                 {"type": "output_text", "text": text,
                  "annotations": [{"type": "url_citation", "start_index": 0, "end_index": 5,
                                   "url": "https://example.com/paris", "title": "Paris"}],
                  "logprobs": [{"token": t, "logprob": -0.1, "bytes": list(t.encode()),
                                "top_logprobs": []} for t in tokens]},
                 {"type": "refusal", "refusal": "But I will not say more than that."}]},
        ],
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": "low", "summary": "auto"}, "service_tier": "default",
        "store": False, "temperature": 1.0, "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [{"type": "function", "name": "get_weather", "strict": False,
                   "parameters": {"type": "object", "properties": {}}}],
        "top_p": 1.0, "truncation": "disabled", "metadata": {},
        "usage": {"input_tokens": 20,
                  "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 10},
                  "total_tokens": 50},
    }
