"""The pieces of Anthropic's passed-through /v1/messages: its stream relay, usage, errors,
client headers, scope and guardrail shape (end to end: tests/server/test_anthropic_native.py)."""

from __future__ import annotations

import json
import random

import orjson
import pytest

from keystead.errors import (
    BodyTooLarge,
    BudgetExceeded,
    EndpointNotAllowed,
    GatewayError,
    ModelNotFound,
    Unavailable,
    UnknownKey,
    UpstreamTimeout,
    render_anthropic,
)
from keystead.guard.inspect import ContentBlocked, inspect
from keystead.pipeline import admit
from keystead.pipeline.messages import client_headers, ensure_envelope, estimate
from keystead.pipeline.sse import MessagesRelay
from keystead.providers.base import Endpoint
from keystead.state.records import KeyRecord
from keystead.usage.extract import read_answer, usage_from_body
from keystead.usage.prices import TokenUsage


def frame(event: str, data: dict[str, object]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


START = frame("message_start", {"type": "message_start", "message": {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-haiku-4-5-20251001",
    "content": [], "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 20, "cache_creation_input_tokens": 7,
              "cache_read_input_tokens": 100, "output_tokens": 1}}})
DELTAS = [frame("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": word}})
          for word in ("Hello", " there", " friend")]
STREAM = b"".join([
    START,
    frame("content_block_start", {"type": "content_block_start", "index": 0,
                                  "content_block": {"type": "text", "text": ""}}),
    frame("ping", {"type": "ping"}),
    *DELTAS,
    frame("content_block_stop", {"type": "content_block_stop", "index": 0}),
    frame("message_delta", {"type": "message_delta",
                            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"output_tokens": 3}}),
    frame("message_stop", {"type": "message_stop"}),
])
FINAL = TokenUsage(prompt_tokens=127, completion_tokens=3, cached_tokens=100,
                   cache_write_tokens=7)


@pytest.mark.parametrize("seed", range(20))
def test_the_relay_passes_every_event_untouched_wherever_the_stream_is_split(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), 12))
    relay = MessagesRelay()
    out = b"".join(relay.feed(STREAM[a:b]) for a, b in zip([0, *cuts], [*cuts, len(STREAM)],
                                                           strict=True))
    assert out + relay.leftover() == STREAM
    assert relay.finished and relay.usage == FINAL
    assert relay.model == "claude-haiku-4-5-20251001"
    assert len(relay.captured) == 3  # the deltas, for a count if the stream is cut


def test_a_cut_stream_keeps_anthropics_input_count_and_counts_its_output() -> None:
    relay = MessagesRelay()
    relay.feed(START + b"".join(DELTAS))
    assert not relay.finished
    assert relay.usage == TokenUsage(127, 1, 100, 7)  # message_start's output_tokens: 1
    usage = estimate("claude-haiku-4-5", None, None, relay.captured, relay.counts)
    assert usage == TokenUsage(127, 3, 100, 7)  # "Hello there friend": 3 tokens


def test_message_delta_may_update_input_counts_too() -> None:
    relay = MessagesRelay()
    relay.feed(START + frame("message_delta", {"type": "message_delta", "delta": {},
                                               "usage": {"output_tokens": 9, "input_tokens": 25,
                                                         "cache_read_input_tokens": None}}))
    assert relay.usage == TokenUsage(prompt_tokens=132, completion_tokens=9, cached_tokens=100,
                                     cache_write_tokens=7)


def test_anthropic_and_openai_usage_in_bodies() -> None:
    message = {"id": "msg_01", "type": "message", "model": "claude-haiku-4-5", "content": [],
               "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 30,
                         "cache_creation_input_tokens": 2, "service_tier": "standard",
                         "cache_creation": {"ephemeral_5m_input_tokens": 2}}}
    # A Messages answer is a well-formed answer for the router, not a malformed one.
    assert read_answer(orjson.dumps(message)) == (TokenUsage(42, 5, 30, 2), "claude-haiku-4-5")
    plain = {**message, "usage": {"input_tokens": 10, "output_tokens": 5}}
    assert usage_from_body(orjson.dumps(plain))[0] == TokenUsage(10, 5)
    # OpenAI's shape with cache writes (the translated anthropic provider writes them).
    chat = {"model": "claude-haiku-4-5", "usage": {
        "prompt_tokens": 42, "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 2}}}
    assert usage_from_body(orjson.dumps(chat))[0] == TokenUsage(42, 5, 30, 2)
    # A compatible server that reports Anthropic's cache fields beside OpenAI's counts (as some
    # proxies do) already counts them in prompt_tokens: not added twice.
    proxy = {"usage": {"prompt_tokens": 42, "completion_tokens": 5,
                       "cache_read_input_tokens": 30}}
    assert usage_from_body(orjson.dumps(proxy))[0] == TokenUsage(42, 5)


@pytest.mark.parametrize(("error", "status", "kind"), [
    (BodyTooLarge("too big"), 413, "request_too_large"),
    (UnknownKey("who?"), 401, "authentication_error"),
    (ModelNotFound("no such model"), 404, "not_found_error"),
    (BudgetExceeded("poor"), 429, "rate_limit_error"),
    (Unavailable("later"), 503, "overloaded_error"),
    (UpstreamTimeout("slow"), 504, "timeout_error"),
])
def test_errors_render_in_anthropics_envelope(error: GatewayError, status: int,
                                              kind: str) -> None:
    assert error.status == status
    document = json.loads(render_anthropic(error, "req_1"))
    assert document == {"type": "error", "error": {
        "type": kind, "message": str(error), "code": error.code},
        "request_id": "req_1"}


def test_provider_errors_keep_anthropics_body_and_others_are_wrapped() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert ensure_envelope(body, 529, "claude") == body
    wrapped = json.loads(ensure_envelope(b"<html>bad gateway</html>", 502, "claude"))
    assert wrapped["type"] == "error" and wrapped["error"]["type"] == "api_error"
    assert wrapped["error"]["code"] == "upstream_http_502"


def test_client_headers() -> None:
    api_key, passed = client_headers([
        (b"x-api-key", b"ksk_x"), (b"anthropic-version", b"2023-06-01"),
        (b"anthropic-beta", b"a-1"), (b"anthropic-beta", b"b-2"), (b"authorization", b"x")])
    assert api_key == b"ksk_x"
    assert passed == {"anthropic-version": "2023-06-01", "anthropic-beta": "a-1,b-2"}


def test_the_messages_scope_includes_counting_tokens() -> None:
    key = KeyRecord(id="k1", name="dev-app-01", key_hash="h", env="dev",
                    endpoints=("messages",))
    admit.check_endpoint(key, Endpoint.MESSAGES)
    admit.check_endpoint(key, Endpoint.COUNT_TOKENS)
    with pytest.raises(EndpointNotAllowed, match=r"may not call chat\.completions"):
        admit.check_endpoint(key, Endpoint.CHAT)
    chat_only = KeyRecord(id="k2", name="dev-app-02", key_hash="h", env="dev",
                          endpoints=("chat.completions",))
    for endpoint in (Endpoint.MESSAGES, Endpoint.COUNT_TOKENS):
        with pytest.raises(EndpointNotAllowed, match="may not call messages"):
            admit.check_endpoint(chat_only, endpoint)


def test_guardrails_read_system_text_blocks_and_tool_results() -> None:
    body = orjson.dumps({
        "model": "claude-haiku-4-5", "max_tokens": 10,
        "system": [{"type": "text", "text": "write to ana@example.com"}],
        "messages": [
            {"role": "user", "content": "bo@example.org"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                               "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": [{"type": "text",
                                                       "text": "cy@example.net"}]}]}]})
    verdict = inspect(Endpoint.MESSAGES, body, "off", "mask")
    assert verdict.kinds == ("email",) and verdict.body is not None
    assert not any(a in verdict.body for a in (b"ana@", b"bo@", b"cy@"))
    with pytest.raises(ContentBlocked):
        inspect(Endpoint.COUNT_TOKENS, body, "off", "block")
