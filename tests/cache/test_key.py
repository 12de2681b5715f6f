"""The cache key: what splits it, what does not, what is never cacheable, and that it is cheap."""

from __future__ import annotations

import copy
import json
import timeit
from typing import Any

import orjson
import pytest

from keystead.cache.key import cache_key, key_prefix

CHAT = "chat.completions"


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "What is the capital of France?"}],
            **extra}


def key(body: dict[str, Any] | bytes, endpoint: str = CHAT, tenant: str = "team-a") -> str | None:
    return cache_key(endpoint, body, tenant=tenant)


def test_key_shape_tenant_then_endpoint_then_sha256() -> None:
    k = key(chat_body())
    assert k is not None
    tenant, endpoint, digest = k.split(":")
    assert (tenant, endpoint) == ("team-a", CHAT)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert k.startswith(key_prefix("team-a")) and k.startswith(key_prefix("team-a", CHAT))


def test_bytes_and_dict_agree_and_the_dict_is_not_modified() -> None:
    body = chat_body(stream=True, user="u1")
    before = copy.deepcopy(body)
    assert key(body) == key(json.dumps(body).encode()) == key(orjson.dumps(body))
    assert body == before


def test_json_key_order_and_whitespace_are_irrelevant_at_every_depth() -> None:
    a = b'{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}],' \
        b'"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}}}'
    b = b'{ "response_format": {"json_schema": {"schema": {}, "name": "x"},\n' \
        b'  "type": "json_schema"}, "messages": [ {"content": "hi", "role": "user"} ],\n' \
        b'  "temperature": 0, "model": "m" }'
    assert key(a) == key(b) is not None


@pytest.mark.parametrize("extra", [
    {"stream": True},
    {"stream": True, "stream_options": {"include_usage": True}},
    {"user": "end-user-42"},
    {"safety_identifier": "hash-of-user"},
    {"metadata": {"feature": "faq"}},
    {"service_tier": "flex"},
    {"prompt_cache_key": "faq-v2", "prompt_cache_retention": "24h"},
])
def test_fields_that_do_not_change_the_answer_do_not_split_the_key(extra: dict[str, Any]) -> None:
    assert key(chat_body(**extra)) == key(chat_body())


@pytest.mark.parametrize("extra", [
    {"temperature": 0.2},
    {"top_p": 0.5},
    {"seed": 7},
    {"max_tokens": 10},
    {"max_completion_tokens": 10},
    {"stop": ["\n"]},
    {"n": 2},
    {"presence_penalty": 0.5},
    {"frequency_penalty": 0.5},
    {"logit_bias": {"50256": -100}},
    {"logprobs": True, "top_logprobs": 2},
    {"tools": [{"type": "function", "function": {"name": "f"}}]},
    {"tool_choice": "required"},
    {"parallel_tool_calls": False},
    {"response_format": {"type": "json_object"}},
    {"reasoning_effort": "low"},
    {"prediction": {"type": "content", "content": "Paris"}},
    {"store": True},  # a stored answer's id is retrievable upstream; an unstored one's is not
    {"top_k": 40},  # a vendor parameter nobody told us about: kept, to be safe
])
def test_fields_that_change_the_answer_split_the_key(extra: dict[str, Any]) -> None:
    assert key(chat_body(**extra)) != key(chat_body())


def test_values_are_taken_as_sent() -> None:
    assert key(chat_body(temperature=0)) != key(chat_body(temperature=0.5))
    assert key(chat_body(model="gpt-4o")) != key(chat_body())
    other = chat_body()
    other["messages"][1]["content"] = "What is the capital of Italy?"
    assert key(other) != key(chat_body())


def test_tenants_never_share_a_key() -> None:
    assert key(chat_body(), tenant="team-a") != key(chat_body(), tenant="team-b")
    # A tenant named to look like another tenant's prefix cannot reach into it.
    sneaky = key(chat_body(), tenant="team-a:chat.completions")
    assert sneaky is not None and not sneaky.startswith(key_prefix("team-a"))
    assert key_prefix("a:b") == "a%3Ab:" and key_prefix("a%3Ab") == "a%253Ab:"


def test_the_endpoint_is_part_of_the_key_and_others_are_not_cacheable() -> None:
    body = {"model": "text-embedding-3-small", "input": "hello"}
    assert key(body, "embeddings") != key(body, "responses")
    assert key(body, "models") is None and key(body, "tokens") is None


def test_embeddings_keep_input_dimensions_and_format() -> None:
    base = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    k = key(base, "embeddings")
    assert k is not None and key({**base, "user": "x"}, "embeddings") == k
    for extra in ({"dimensions": 256}, {"encoding_format": "base64"}, {"input": ["a"]}):
        assert key({**base, **extra}, "embeddings") != k


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"', b"{}",
                                  b'{"model": 3, "messages": []}'])
def test_a_body_that_is_not_a_request_is_not_cacheable(body: bytes) -> None:
    assert key(body) is None


def test_chat_with_audio_output_is_not_cacheable() -> None:
    assert key(chat_body(modalities=["text", "audio"],
                         audio={"voice": "alloy", "format": "wav"})) is None
    assert key(chat_body(audio={"voice": "alloy", "format": "wav"})) is None
    assert key(chat_body(modalities=["text"])) is not None


RESPONSES = "responses"


def responses_body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "input": "Say hi", **extra}


@pytest.mark.parametrize("extra", [
    {"previous_response_id": "resp_123"},
    {"conversation": "conv_123"},
    {"conversation": {"id": "conv_123"}},
    {"background": True},
    {"prompt": {"id": "pmpt_123"}},  # the template's current version can change upstream
    {"tools": [{"type": "mcp", "server_label": "x", "server_url": "https://x"}]},
    {"tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]},
    {"tools": [{"type": "image_generation"}]},
    {"tools": [{"type": "shell", "environment": {"type": "container_auto"}}]},
    {"tools": [{"type": "shell"}]},
    {"tools": [{"type": "a_tool_from_the_future"}]},
    {"tools": [{"type": "function", "name": "f"}, {"type": "mcp", "server_label": "x"}]},
])
def test_stateful_or_side_effecting_responses_are_not_cacheable(extra: dict[str, Any]) -> None:
    assert key(responses_body(**extra), RESPONSES) is None


@pytest.mark.parametrize("extra", [
    {"store": False},
    {"store": True},
    {"previous_response_id": None, "conversation": None},
    {"prompt": {"id": "pmpt_123", "version": "3", "variables": {"name": "Ana"}}},
    {"tools": [{"type": "function", "name": "f", "parameters": {}}]},
    {"tools": [{"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}]},
    {"tools": [{"type": "shell", "environment": {"type": "local"}}]},
    {"instructions": "Be brief.", "text": {"format": {"type": "text"}}},
])
def test_stateless_responses_are_cacheable(extra: dict[str, Any]) -> None:
    assert key(responses_body(**extra), RESPONSES) is not None


def test_responses_background_false_is_the_default_and_store_splits() -> None:
    base = key(responses_body(), RESPONSES)
    assert key(responses_body(background=False), RESPONSES) == base
    assert key(responses_body(stream=True, user="u"), RESPONSES) == base
    assert key(responses_body(store=False), RESPONSES) != key(responses_body(store=True),
                                                              RESPONSES)
    for extra in ({"instructions": "x"}, {"max_output_tokens": 5}, {"include": ["x"]},
                  {"reasoning": {"effort": "low"}}, {"text": {"verbosity": "low"}}):
        assert key(responses_body(**extra), RESPONSES) != base


def test_n_and_logprobs_are_cacheable_even_streamed() -> None:
    assert key(chat_body(n=3, stream=True, logprobs=True, top_logprobs=2)) is not None


def typical_chat_body() -> bytes:
    """~2 KB: a system prompt, a short exchange, one tool, sampling parameters."""
    body = {
        "model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 400, "stream": True,
        "stream_options": {"include_usage": True}, "user": "u-123",
        "messages": [
            {"role": "system", "content": "You are a helpful support assistant for ACME. " * 9},
            {"role": "user", "content": "My order #12345 did not arrive, what can I do? " * 10},
            {"role": "assistant", "content": "Sorry to hear that. What is your postcode? " * 7},
            {"role": "user", "content": "It is 75011, Paris. Thanks! " * 6}],
        "tools": [{"type": "function", "function": {
            "name": "lookup_order", "description": "Find an order by its number.",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}},
                           "required": ["id"]}}}],
    }
    return orjson.dumps(body)


def test_a_typical_key_costs_microseconds() -> None:
    body = typical_chat_body()
    assert 1800 <= len(body) <= 2300
    runs = 2000
    best = min(timeit.repeat(lambda: cache_key(CHAT, body, tenant="team-a"), number=runs,
                             repeat=5)) / runs
    # ~10 µs on a laptop; the bound only catches an accidental order-of-magnitude regression.
    assert best < 200e-6, f"cache_key took {best * 1e6:.1f} µs"
